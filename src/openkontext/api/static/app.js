// OpenKontext playground: submit an edit, watch it, compare, and keep editing — with the public API only.

import { ApiError, createApi, endpoint, EDIT_ROUTE, fetchResult } from "./api.js";
import { curlCommand } from "./curl.js";
import { EXAMPLES, examplePath, exampleUrl } from "./examples.js";
import { HISTORY_LIMITS, HistoryTooLarge, megabytes, openHistory } from "./history-store.js";
import { TaskStatus } from "./statuses.js";

const KEY_STORAGE = "openkontext.playground.key";
const POLL_MS = 400;
const POLL_RETRIES = 5; // consecutive failed polls (network, 5xx) before giving up, with backoff
const MAX_SAFE_SEED = Number.MAX_SAFE_INTEGER;
const DEFAULTS = { steps: "50", guidance: "3", safety: "2", format: "png", aspect: "", lora: "" };
// OpenKontext's request extensions: a number field each, left out of the request when empty (the server's default);
// each field's range is its input's min and max in index.html
const REQUEST_EXTENSIONS = [
  { id: "preserve", field: "preserve", label: "Keep unchanged pixels" },
  { id: "glyph-guidance", field: "glyph_guidance", label: "Glyph guidance" },
];
const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp" };

const $ = (id) => document.getElementById(id);

const state = {
  key: "",
  input: null, // {dataUrl, label, path, parent: step number or null, imageId: its id in the history store}
  steps: [], // finished results, in order: the history
  open: null, // the step shown in the result panel
  job: null, // {id, cancelling}
  adapters: [], // the server's LoRA adapters (GET /health): [{name, scale}]
  history: null, // the history kept in this browser (history-store.js), or null where it cannot be kept
  restored: null, // settles when the kept history has been read at page load
};

const api = createApi(() => state.key);

// --- small helpers ----------------------------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((child) => child != null));
  return node;
}

function stepById(n) {
  return state.steps.find((step) => step.n === n) || null;
}

/** The step's lineage, oldest first: [root step, …, step]. */
function chainOf(step) {
  const chain = [];
  for (let current = step; current; current = current.input?.parent ? stepById(current.input.parent) : null) {
    chain.unshift(current);
  }
  return chain;
}

// --- messages ---------------------------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  $("message-text").textContent = text;
  $("message").dataset.kind = kind;
  $("message").hidden = false;
  $("message").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function clearMessage() {
  $("message").hidden = true;
  $("message-text").textContent = "";
}

// --- API key ----------------------------------------------------------------------------------------------------

function loadKey() {
  try {
    state.key = localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    state.key = "";
  }
  $("api-key").value = state.key;
  $("key-forget").hidden = !state.key;
  if (state.key) verifyKey();
}

function storeKey(key) {
  state.key = key;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage may be off (private mode): the key still works for this visit.
  }
  $("key-forget").hidden = !key;
}

async function verifyKey() {
  const status = $("key-status");
  status.dataset.state = "checking";
  status.textContent = "Checking…";
  try {
    await api.checkKey();
    status.dataset.state = "ok";
    status.textContent = "✓ Key accepted";
  } catch (error) {
    status.dataset.state = "bad";
    status.textContent = error.status === 403 ? "✗ Key rejected" : "✗ Could not check the key";
    showMessage(error.message);
  }
}

function onKeySave(event) {
  event.preventDefault();
  clearMessage();
  storeKey($("api-key").value.trim());
  if (state.key) verifyKey();
  else $("key-status").textContent = "";
}

function onKeyForget() {
  storeKey("");
  $("api-key").value = "";
  $("key-status").textContent = "Key forgotten";
  $("key-status").dataset.state = "";
  $("api-key").focus();
}

function onKeyToggle() {
  const field = $("api-key");
  const show = field.type === "password";
  field.type = show ? "text" : "password";
  $("key-toggle").textContent = show ? "Hide" : "Show";
  $("key-toggle").setAttribute("aria-pressed", String(show));
}

// --- the server: model notice, LoRA adapters ---------------------------------------------------------------------

async function showServerInfo() {
  try {
    const health = await api.health();
    showAdapters(health.loras || []);
    showDefaults(health.defaults || {});
    if (!health.placeholder_model) return;
    const notice = $("model-notice");
    notice.textContent = `Placeholder model: this server runs “${health.model}”, a randomly initialised model, so ` +
      "results look like noise, not edits. Everything else works end to end; see the README’s “Model status”.";
    notice.hidden = false;
  } catch {
    // The first API call will say clearly if the server is unreachable.
  }
}

/** The adapter picker lists the server's LoRA adapters; it stays hidden on a server without any. */
function showAdapters(adapters) {
  state.adapters = adapters;
  const select = $("lora");
  select.replaceChildren(element("option", { value: "", textContent: "None" }));
  for (const adapter of adapters) {
    select.append(element("option", { value: adapter.name, textContent: adapter.name }));
  }
  $("lora-param").hidden = adapters.length === 0;
}

/** An empty extension field shows the server's default; glyph guidance only on a model that uses it. */
function showDefaults(defaults) {
  if (typeof defaults.preserve === "number") {
    $("preserve").placeholder = defaults.preserve ? `default ${defaults.preserve}` : "default 0 (off)";
  }
  const glyphs = typeof defaults.glyph_guidance === "number";
  $("glyph-param").hidden = !glyphs;
  if (glyphs) $("glyph-guidance").placeholder = `default ${defaults.glyph_guidance}`;
}

/** A chosen adapter starts at the server's default scale for it. */
function onAdapterChange() {
  const adapter = state.adapters.find((candidate) => candidate.name === $("lora").value);
  $("lora-scale").disabled = !adapter;
  $("lora-scale").value = String(adapter ? adapter.scale : 1);
}

// --- the input image --------------------------------------------------------------------------------------------

function setInput(input) {
  state.input = input;
  renderInput();
}

function renderInput() {
  const input = state.input;
  const image = $("input-image");
  $("drop-zone").dataset.empty = String(!input);
  $("input-no-preview").hidden = true;
  image.hidden = !input;
  if (input) {
    image.src = input.dataUrl;
    image.alt = `Input image: ${input.label}`;
  } else {
    image.removeAttribute("src");
  }
  $("input-label").textContent = input ? input.label : "No image: text to image";
  $("clear-image").hidden = !input;
  $("replace-image").hidden = !input;
  $("submit").textContent = input ? "Edit image" : "Generate image";
  $("prompt-label").textContent = input ? "What should change?" : "What should the new image show?";
  $("prompt").placeholder = input ? "Change 'KELLAR' to 'SUMITH'" : "A blue creature and a red ball in a meadow";
  $("chain-from").textContent = input?.parent ? `continues from step #${input.parent}` : "";
}

async function useFile(file, label) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showMessage(`“${file.name}” is not an image (${file.type}). Choose a PNG, JPEG, WebP, GIF, BMP or TIFF file.`);
    return;
  }
  clearMessage();
  try {
    const dataUrl = await readAsDataUrl(file);
    const path = file.name && file.name !== "image.png" ? file.name : "pasted-image.png";
    setInput({ dataUrl, label: label || file.name || "Pasted image", path, parent: null });
  } catch (error) {
    showMessage(`“${file.name}” could not be read: ${error?.message || error}`);
  }
}

function onInputImageError() {
  if (!state.input) return;
  $("input-image").hidden = true;
  $("input-no-preview").hidden = false;
}

const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");

/** Files dropped anywhere on the page become the input; other drags (text into the instruction) are left alone. */
function bindDropAndPaste() {
  const zone = $("drop-zone");
  window.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    zone.classList.add("dragging");
  });
  window.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) zone.classList.remove("dragging");
  });
  window.addEventListener("drop", (event) => {
    zone.classList.remove("dragging");
    if (!carriesFiles(event)) return;
    event.preventDefault();
    useFile(event.dataTransfer.files[0] || null);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((item) => item.type.startsWith("image/"));
    if (!file) return;
    event.preventDefault();
    useFile(file, "Pasted image");
  });
  $("pick-image").addEventListener("click", () => $("file-input").click());
  $("replace-image").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (event) => {
    useFile(event.target.files[0]);
    event.target.value = "";
  });
  $("clear-image").addEventListener("click", () => {
    setInput(null);
    $("pick-image").focus();
  });
  $("input-image").addEventListener("error", onInputImageError);
}

// --- parameters -------------------------------------------------------------------------------------------------

function onSeedToggle() {
  const random = $("seed-random").checked;
  $("seed").disabled = random;
  if (!random) $("seed").focus();
}

function resetParameters() {
  $("steps").value = DEFAULTS.steps;
  $("guidance").value = DEFAULTS.guidance;
  $("safety").value = DEFAULTS.safety;
  $("format").value = DEFAULTS.format;
  $("aspect").value = DEFAULTS.aspect;
  $("lora").value = DEFAULTS.lora;
  onAdapterChange();
  for (const extension of REQUEST_EXTENSIONS) $(extension.id).value = "";
  $("seed-random").checked = true;
  $("seed").value = "";
  $("seed").disabled = true;
}

function useSeed(seed) {
  $("seed-random").checked = false;
  $("seed").disabled = false;
  $("seed").value = String(seed);
}

/** The request body from the form (without input_image); throws a message for values the page can check. */
function readBody() {
  const prompt = $("prompt").value.trim();
  if (!prompt) throw new Error("Type an instruction first: what should change in the image?");
  const body = { prompt };
  const number = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
  const steps = number("steps");
  const guidance = number("guidance");
  if (steps !== null) body.steps = steps;
  if (guidance !== null) body.guidance = guidance;
  if (!$("seed-random").checked) {
    const seed = number("seed");
    if (seed === null || !Number.isInteger(seed) || Math.abs(seed) > MAX_SAFE_SEED) {
      throw new Error("The seed must be a whole number (or tick “Random”).");
    }
    body.seed = seed;
  }
  body.safety_tolerance = Number($("safety").value);
  body.output_format = $("format").value;
  if ($("aspect").value) body.aspect_ratio = $("aspect").value;
  if ($("lora").value) {
    const scale = number("lora-scale");
    if (scale === null || !(Math.abs(scale) <= 4)) throw new Error("The LoRA scale must be a number from -4 to 4.");
    body.loras = [{ name: $("lora").value, scale }];
  }
  for (const { id, field, label } of REQUEST_EXTENSIONS) {
    if ($(id).closest(".param").hidden) continue; // a field the server's model ignores
    const value = number(id);
    if (value === null) continue;
    const [min, max] = [Number($(id).min), Number($(id).max)];
    if (!(value >= min && value <= max)) throw new Error(`${label} must be a number from ${min} to ${max}.`);
    body[field] = value;
  }
  return body;
}

function fillForm(step) {
  const { body } = step;
  $("prompt").value = body.prompt;
  $("steps").value = body.steps ?? DEFAULTS.steps;
  $("guidance").value = body.guidance ?? DEFAULTS.guidance;
  $("safety").value = String(body.safety_tolerance ?? DEFAULTS.safety);
  $("format").value = body.output_format ?? DEFAULTS.format;
  $("aspect").value = body.aspect_ratio ?? "";
  $("lora").value = body.loras?.[0]?.name ?? DEFAULTS.lora; // "" when this server no longer has it
  onAdapterChange();
  if ($("lora").value) $("lora-scale").value = String(body.loras[0].scale);
  for (const { id, field } of REQUEST_EXTENSIONS) $(id).value = body[field] ?? "";
  useSeed(step.seed);
}

// --- running a task ---------------------------------------------------------------------------------------------

function setBusy(busy) {
  $("submit").disabled = busy;
  $("submit").setAttribute("aria-busy", String(busy));
  $("job").hidden = !busy;
  $("cancel").disabled = !busy;
  if (busy) {
    $("empty-state").hidden = true;
    $("result").hidden = true;
  } else {
    renderOpenStep();
  }
}

function renderProgress(view) {
  let text = "Starting…";
  if (view.queue_position != null) text = `Waiting in the queue: position ${view.queue_position}`;
  else if (view.steps) text = `Running: step ${view.step ?? 0} of ${view.steps}`;
  if (state.job?.cancelling) text = `Cancelling… (${text.toLowerCase()})`;
  $("job-status").textContent = text;
  $("job-progress").value = Math.max(0, Math.min(1, view.progress ?? 0));
  const preview = view.preview?.image;
  $("job-preview-figure").hidden = !preview;
  if (preview) {
    $("job-preview").src = preview;
    $("job-preview-caption").textContent = `Preview at step ${view.preview.step}`;
  }
}

function resetJobView() {
  $("job-status").textContent = "Submitting…";
  $("job-progress").value = 0;
  $("job-progress").removeAttribute("value"); // indeterminate until the first answer
  $("job-preview-figure").hidden = true;
  $("job-preview").removeAttribute("src");
}

async function pollUntilDone(id) {
  let failures = 0;
  for (;;) {
    let view;
    try {
      view = await api.poll(id);
      failures = 0;
    } catch (error) {
      // A dropped connection or a restarting server: the task lives on in the job store, so keep asking a while.
      const transient = error instanceof ApiError && (error.status === 0 || error.status >= 500);
      if (!transient || ++failures > POLL_RETRIES) throw error;
      $("job-status").textContent = `Reconnecting… (${error.message})`;
      await sleep(POLL_MS * 2 ** failures);
      continue;
    }
    if (view.status !== TaskStatus.PENDING) return view;
    renderProgress(view);
    await sleep(POLL_MS);
  }
}

function terminalMessage(view) {
  const reasons = (view.details?.moderation_reasons || []).filter(Boolean).join("; ");
  const why = reasons ? ` Reason: ${reasons}.` : "";
  switch (view.status) {
    case TaskStatus.REQUEST_MODERATED:
      return `Request Moderated: the instruction or the input image was refused before running.${why}`;
    case TaskStatus.CONTENT_MODERATED:
      return `Content Moderated: the result was refused, so it is not shown.${why}`;
    case TaskStatus.ERROR:
      return `The task failed: ${(view.details?.error || "the engine reported an error").replace(/\.$/, "")}.`;
    case TaskStatus.TASK_NOT_FOUND:
      return "Task not found: the server no longer knows this task (it may have expired).";
    default:
      return `The task ended as “${view.status}”.`;
  }
}

async function onSubmit(event) {
  event.preventDefault();
  if (state.job) return;
  clearMessage();
  if (!state.key) {
    showMessage("Enter your API key first (top of the page): every request needs it in the x-key header.");
    $("api-key").focus();
    return;
  }
  let body;
  try {
    body = readBody();
  } catch (error) {
    showMessage(error.message);
    return;
  }
  await run(body, state.input);
}

async function run(body, input) {
  state.job = { id: null, cancelling: false };
  resetJobView();
  setBusy(true);
  $("output-title").scrollIntoView({ block: "nearest", behavior: "smooth" });
  try {
    const request = input ? { ...body, input_image: input.dataUrl } : body;
    const { id } = await api.submit(request);
    state.job.id = id;
    if (state.job.cancelling) await api.cancel(id); // Cancel was pressed while the request was on its way
    const view = await pollUntilDone(id);
    if (view.status === TaskStatus.READY) await addStep(view, body, input);
    else if (view.status === TaskStatus.CANCELLED) showMessage("Cancelled: the task was stopped before it finished.", "info");
    else showMessage(terminalMessage(view));
  } catch (error) {
    showMessage(error?.message || String(error));
  } finally {
    state.job = null;
    setBusy(false);
  }
}

async function onCancel() {
  const job = state.job;
  if (!job || job.cancelling) return;
  job.cancelling = true;
  $("cancel").disabled = true;
  $("job-status").textContent = "Cancelling…";
  if (!job.id) return; // run() cancels as soon as the submit answers
  try {
    await api.cancel(job.id);
  } catch (error) {
    showMessage(error.message);
  }
}

// --- results and history ----------------------------------------------------------------------------------------

async function addStep(view, body, input) {
  const blob = await fetchResult(view.result.sample);
  await state.restored; // numbers continue after the kept steps
  const step = {
    n: Math.max(0, ...state.steps.map((kept) => kept.n)) + 1,
    taskId: view.id,
    body: { ...body, seed: view.result.seed },
    prompt: body.prompt,
    seed: view.result.seed,
    duration: view.result.duration,
    input,
    blob,
    objectUrl: URL.createObjectURL(blob),
    dataUrl: await readAsDataUrl(blob),
    resultImage: null,
  };
  const dropped = await keepStep(step); // may renumber the step if another tab took its number
  step.fileName = fileNameOf(step);
  state.steps.push(step);
  dropSteps(dropped);
  dropSteps(state.steps.slice(0, Math.max(0, state.steps.length - HISTORY_LIMITS.steps)).map((old) => old.n));
  state.open = step.n;
  renderHistory();
}

function fileNameOf(step) {
  const format = step.body.output_format || "png";
  return `openkontext-step-${step.n}.${EXTENSIONS[format] || format}`;
}

function dropSteps(numbers) {
  const drop = new Set(numbers);
  for (const step of state.steps) if (drop.has(step.n)) URL.revokeObjectURL(step.objectUrl);
  state.steps = state.steps.filter((step) => !drop.has(step.n));
  if (drop.has(state.open)) state.open = state.steps.at(-1)?.n ?? null;
}

function renderOpenStep() {
  const step = stepById(state.open);
  $("empty-state").hidden = Boolean(step);
  $("result").hidden = !step;
  if (step) renderResult(step);
}

function renderResult(step) {
  $("result-title").replaceChildren(...chainNodes(step));
  const hasInput = Boolean(step.input);
  $("compare").dataset.hasInput = String(hasInput);
  $("before-image").hidden = !hasInput;
  if (hasInput) $("before-image").src = step.input.dataUrl;
  $("result-image").src = step.objectUrl;
  $("result-image").alt = `After: result of step ${step.n}, “${step.prompt}”`;
  setCompareMode(hasInput ? currentCompareMode() : "side");
  $("compare-modes").hidden = !hasInput;
  renderMeta(step);
  $("download").href = step.objectUrl;
  $("download").download = step.fileName;
  $("curl").textContent = curlFor(step);
  $("copy-status").textContent = "";
}

/** "sign.png → #1 → #2": the lineage of a step, each earlier step a button that opens it. */
function chainNodes(step) {
  const chain = chainOf(step);
  const root = chain[0].input ? chain[0].input.label : "text to image";
  const nodes = [element("span", { className: "chain-root", textContent: root })];
  for (const link of chain) {
    nodes.push(" → ");
    if (link === step) {
      nodes.push(element("strong", { textContent: `#${link.n}` }));
    } else {
      const button = element("button", { type: "button", className: "link", textContent: `#${link.n}` });
      button.addEventListener("click", () => openStep(link.n));
      nodes.push(button);
    }
  }
  return nodes;
}

function renderMeta(step) {
  const rows = [
    ["Instruction", step.prompt],
    ["Seed", String(step.seed)],
    ["Steps · guidance", `${step.body.steps ?? 50} · ${step.body.guidance ?? 3}`],
    ["Format", step.body.output_format],
    ...(step.body.loras?.length
      ? [["LoRA", step.body.loras.map((lora) => `${lora.name} × ${lora.scale}`).join(", ")]]
      : []),
    ...REQUEST_EXTENSIONS.filter(({ field }) => step.body[field] != null)
      .map(({ field, label }) => [label, String(step.body[field])]),
    ["Time", step.duration != null ? `${step.duration.toFixed(2)} s` : "—"],
  ];
  const list = $("result-meta");
  list.replaceChildren();
  for (const [term, value] of rows) {
    list.append(element("dt", { textContent: term }), element("dd", { textContent: value }));
  }
}

function curlFor(step) {
  return curlCommand({
    url: endpoint(EDIT_ROUTE),
    pollUrl: endpoint("v1/get_result"),
    body: step.body,
    imagePath: step.input ? step.input.path : null,
    outputPath: step.fileName,
  });
}

function openStep(n) {
  if (state.job) return;
  state.open = n;
  renderOpenStep();
  renderHistory();
}

function continueFrom(step) {
  const label = `Result of step #${step.n}`;
  setInput({ dataUrl: step.dataUrl, label, path: step.fileName, parent: step.n, imageId: step.resultImage });
  const prompt = $("prompt");
  prompt.focus();
  prompt.select();
  prompt.scrollIntoView({ block: "center", behavior: "smooth" });
}

function reuseSettings(step) {
  fillForm(step);
  setInput(step.input);
  $("parameters").open = true;
  $("prompt").focus();
}

function renderHistory() {
  const list = $("history");
  const openChain = new Set(state.open ? chainOf(stepById(state.open)).map((step) => step.n) : []);
  list.replaceChildren(...state.steps.map((step) => historyItem(step, openChain)));
  $("history-empty").hidden = state.steps.length > 0;
  $("history-count").textContent = state.steps.length ? `(${state.steps.length})` : "";
  $("history-clear").hidden = state.steps.length === 0;
}

function historyItem(step, openChain) {
  const from = step.input ? (step.input.parent ? `from #${step.input.parent}` : step.input.label) : "text to image";
  const button = element(
    "button",
    { type: "button", className: "history-step", title: step.prompt },
    element("img", { src: step.objectUrl, alt: "" }),
    element("span", { className: "history-n", textContent: `#${step.n}` }),
    element("span", { className: "history-from", textContent: from }),
    element("span", { className: "history-prompt", textContent: step.prompt }),
  );
  button.setAttribute("aria-label", `Step ${step.n}, ${from}: ${step.prompt}`);
  if (step.n === state.open) button.setAttribute("aria-current", "step");
  button.addEventListener("click", () => openStep(step.n));
  const item = element("li", { className: "history-item" }, button);
  item.dataset.step = String(step.n);
  if (openChain.has(step.n)) item.classList.add("in-chain");
  if (step.input?.parent && step.input.parent !== step.n - 1) item.classList.add("branch");
  return item;
}

// --- the history kept in this browser (history-store.js) -------------------------------------------------------

const KEPT_NOTE = `Kept in this browser: the last ${HISTORY_LIMITS.steps} steps ` +
  `(up to ${megabytes(HISTORY_LIMITS.bytes)}), until you clear them.`;

function setHistoryNote(text, kind = "") {
  $("history-note").textContent = text;
  $("history-note").dataset.kind = kind;
}

/** Read the kept history into the page (at load); the newest step is opened. */
async function restoreHistory() {
  state.history = await openHistory();
  if (!state.history) {
    setHistoryNote("This browser does not let the page keep its history: it lasts until you reload.", "warn");
    return;
  }
  setHistoryNote(KEPT_NOTE);
  let records;
  try {
    records = await state.history.load();
  } catch (error) {
    setHistoryNote(`The kept history could not be read (${error?.message || error}).`, "warn");
    return;
  }
  const dataUrls = new Map(); // image id → data: URL, read once however many steps share the image
  const dataUrlOf = async (id, blob) => {
    if (!dataUrls.has(id)) dataUrls.set(id, await readAsDataUrl(blob));
    return dataUrls.get(id);
  };
  for (const record of records) {
    const { resultBlob, inputBlob, result, input, ...fields } = record;
    const step = {
      ...fields,
      input: input && {
        label: input.label,
        path: input.path,
        parent: input.parent,
        imageId: input.image,
        dataUrl: await dataUrlOf(input.image, inputBlob),
      },
      blob: resultBlob,
      objectUrl: URL.createObjectURL(resultBlob),
      dataUrl: await dataUrlOf(result, resultBlob),
      resultImage: result,
    };
    step.fileName = fileNameOf(step);
    state.steps.push(step);
  }
  state.open = state.steps.at(-1)?.n ?? null;
}

async function blobOf(dataUrl) {
  return (await fetch(dataUrl)).blob();
}

/** Store a new step in the browser; the step numbers dropped to keep the bounds. Failing to store is a note, never
 * an error: the step is shown either way, it just does not outlast the page. */
async function keepStep(step) {
  if (!state.history) return [];
  const input = step.input;
  const record = {
    n: step.n,
    taskId: step.taskId,
    body: step.body,
    prompt: step.prompt,
    seed: step.seed,
    duration: step.duration,
    input: input && { label: input.label, path: input.path, parent: input.parent, image: input.imageId ?? null },
  };
  const notKept = `Step #${step.n} is shown but not kept in this browser`;
  try {
    const blobs = { result: step.blob, input: input ? await blobOf(input.dataUrl) : null };
    for (let attempt = 1; ; attempt++) {
      try {
        const kept = await state.history.add(record, blobs);
        step.n = kept.n;
        step.resultImage = kept.resultImage;
        if (input) input.imageId = kept.inputImage;
        if (attempt === 1) setHistoryNote(KEPT_NOTE);
        else setHistoryNote(`${KEPT_NOTE} The browser's storage was full: older steps were dropped.`, "warn");
        return kept.dropped;
      } catch (error) {
        if (error?.name !== "QuotaExceededError") throw error;
        // The browser's storage for this page is full: make room by dropping the older half, and try again.
        const stored = (await state.history.usage()).steps;
        if (stored === 0) {
          setHistoryNote(`${notKept}: the browser's storage for this page is full.`, "warn");
          return [];
        }
        await state.history.trim(Math.floor(stored / 2));
      }
    }
  } catch (error) {
    const why = error instanceof HistoryTooLarge ? error.message : `storing failed (${error?.message || error})`;
    setHistoryNote(`${notKept}: ${why}.`, "warn");
    return [];
  }
}

async function onClearHistory() {
  if (!state.steps.length) return;
  const question = "Clear the history? Its results are removed from this browser (the server keeps each task " +
    "until it expires).";
  if (!window.confirm(question)) return;
  dropSteps(state.steps.map((step) => step.n));
  if (state.input?.parent || state.input?.imageId != null) {
    setInput({ ...state.input, parent: null, imageId: null }); // the image stays the input; its step is gone
  }
  renderHistory();
  if (!state.job) renderOpenStep();
  if (!state.history) return;
  try {
    await state.history.clear();
    setHistoryNote(KEPT_NOTE);
  } catch (error) {
    setHistoryNote(`The history could not be cleared in this browser (${error?.message || error}).`, "warn");
  }
}

// --- comparing --------------------------------------------------------------------------------------------------

function currentCompareMode() {
  return document.querySelector('input[name="compare"]:checked')?.value || "side";
}

function setCompareMode(mode) {
  $("compare").dataset.mode = mode;
  $("slider-row").hidden = mode !== "slider";
  updateSplit();
}

function updateSplit() {
  $("compare").style.setProperty("--split", `${$("compare-slider").value}%`);
}

// --- copying the curl command -----------------------------------------------------------------------------------

async function copyCurl() {
  const text = $("curl").textContent;
  $("curl-details").open = true;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-status").textContent = "Copied to the clipboard";
  } catch {
    selectText($("curl")); // Clipboard API unavailable (e.g. plain http on a LAN): select it for Ctrl+C.
    $("copy-status").textContent = "Selected: press Ctrl+C to copy";
  }
}

function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// --- the gallery ------------------------------------------------------------------------------------------------

function renderGallery() {
  const items = EXAMPLES.map((example, index) => {
    const picture = example.image
      ? element("img", { src: exampleUrl(example.image), alt: "", loading: "lazy" })
      : element("span", { className: "gallery-blank", textContent: "Aa", ariaHidden: "true" });
    const button = element(
      "button",
      { type: "button", className: "gallery-card" },
      picture,
      element("span", { className: "gallery-capability", textContent: example.capability }),
      element("span", { className: "gallery-prompt", textContent: example.prompt }),
    );
    button.dataset.example = String(index);
    button.addEventListener("click", () => useExample(example));
    return element("li", {}, button);
  });
  $("gallery").replaceChildren(...items);
}

async function useExample(example) {
  clearMessage();
  try {
    if (example.image) {
      const response = await fetch(exampleUrl(example.image));
      if (!response.ok) throw new Error(`the example image could not be loaded (${response.status})`);
      const dataUrl = await readAsDataUrl(await response.blob());
      setInput({ dataUrl, label: `Example: ${example.image}`, path: examplePath(example.image), parent: null });
    } else {
      setInput(null);
    }
    $("prompt").value = example.prompt;
    $("prompt").focus();
    $("compose-title").scrollIntoView({ block: "start", behavior: "smooth" });
  } catch (error) {
    showMessage(`Could not use this example: ${error.message}`);
  }
}

// --- start ------------------------------------------------------------------------------------------------------

function bindEvents() {
  $("key-form").addEventListener("submit", onKeySave);
  $("key-forget").addEventListener("click", onKeyForget);
  $("key-toggle").addEventListener("click", onKeyToggle);
  $("message-close").addEventListener("click", clearMessage);
  $("edit-form").addEventListener("submit", onSubmit);
  $("edit-form").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("edit-form").requestSubmit();
  });
  $("seed-random").addEventListener("change", onSeedToggle);
  $("reset-params").addEventListener("click", resetParameters);
  $("lora").addEventListener("change", onAdapterChange);
  $("cancel").addEventListener("click", onCancel);
  $("continue").addEventListener("click", () => continueFrom(stepById(state.open)));
  $("copy-curl").addEventListener("click", copyCurl);
  $("reuse").addEventListener("click", () => reuseSettings(stepById(state.open)));
  $("history-clear").addEventListener("click", onClearHistory);
  $("compare-slider").addEventListener("input", updateSplit);
  document.querySelectorAll('input[name="compare"]').forEach((radio) => {
    radio.addEventListener("change", () => setCompareMode(currentCompareMode()));
  });
  bindDropAndPaste();
}

async function start() {
  bindEvents();
  resetParameters();
  renderInput();
  renderGallery();
  renderHistory();
  renderOpenStep();
  loadKey();
  const serverInfo = showServerInfo(); // never rejects: an unreachable server is reported by the first API call
  state.restored = restoreHistory().catch((error) => {
    setHistoryNote(`The kept history could not be read (${error?.message || error}).`, "warn");
  });
  await state.restored;
  renderHistory();
  if (!state.job) renderOpenStep();
  // ready once the server's model notice, adapters and defaults are shown too (tests and scripts wait for this)
  await serverInfo;
  document.body.dataset.ready = "true";
}

start();
