// The playground's only way to the server: the public API, exactly as any other client calls it (docs/api.md).
// Paths are relative to the page, so a server behind a reverse proxy at a sub-path works unchanged.

export const EDIT_ROUTE = "v1/flux-kontext-pro"; // edits with input_image, text to image without it

/** A refused or failed request, with a message written for the person at the page. */
export class ApiError extends Error {
  constructor(status, message, detail = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

/** An absolute URL for a path of this server (used in requests and in the curl command). */
export function endpoint(path) {
  return new URL(path, document.baseURI).href;
}

function fieldName(loc) {
  const parts = (loc || []).filter((part) => part !== "body");
  return parts.length ? parts.join(".") : "request";
}

/** The text of a `{"detail": ...}` body: a string, or FastAPI's list of field errors. */
export function detailText(detail) {
  if (Array.isArray(detail)) {
    return detail.map(fieldError).join("; ");
  }
  if (typeof detail === "string") return detail;
  return detail == null ? "" : JSON.stringify(detail);
}

function fieldError(error) {
  const name = fieldName(error.loc);
  const message = String(error.msg ?? "");
  return message.startsWith(`${name}:`) ? message : `${name}: ${message}`;
}

function isImageError(detail) {
  return Array.isArray(detail) && detail.some((error) => (error.loc || []).some((part) => /input_image/.test(part)));
}

/** A clear sentence for an HTTP error status and its body. */
export function describeHttpError(status, detail) {
  const text = detailText(detail);
  const said = text ? `: ${text}` : "";
  switch (status) {
    case 401:
      return `No API key was sent (401)${said}. Enter your key at the top of the page.`;
    case 403:
      return `The server rejected the API key (403)${said}. Check the key at the top of the page.`;
    case 413:
      return `The request is too large for this server (413)${said}. Try a smaller image.`;
    case 422:
      return isImageError(detail)
        ? `The server could not use this image (422)${said}.`
        : `The server refused the request (422)${said}.`;
    case 429:
      return `Too many tasks at once for this key (429)${said}. Wait for one to finish or cancel it, then try again.`;
    default:
      return `The server answered ${status}${said}.`;
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** An API client bound to a function that returns the current key. */
export function createApi(getKey) {
  async function request(method, path, body) {
    const headers = { accept: "application/json" };
    const key = getKey();
    if (key) headers["x-key"] = key;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(endpoint(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, `Cannot reach the server (${error.message}). Is it still running?`);
    }
    const data = await readJson(response);
    if (!response.ok) {
      throw new ApiError(response.status, describeHttpError(response.status, data?.detail), data?.detail);
    }
    return data;
  }

  const query = (id) => `?id=${encodeURIComponent(id)}`;

  return {
    health: () => request("GET", "health"),
    checkKey: () => request("GET", "v1/tasks?limit=1"),
    submit: (body) => request("POST", EDIT_ROUTE, body),
    poll: (id) => request("GET", `v1/get_result${query(id)}`),
    cancel: (id) => request("POST", `v1/cancel${query(id)}`),
  };
}

/** Download a result's signed URL (no key needed). Falls back to this origin when the URL names another host. */
export async function fetchResult(sample) {
  const url = new URL(sample, document.baseURI);
  const candidates = [url.href];
  if (url.origin !== location.origin) candidates.push(endpoint(url.pathname.replace(/^\//, "") + url.search));
  let lastError = null;
  for (const candidate of candidates) {
    try {
      const response = await fetch(candidate, { cache: "no-store" });
      if (response.ok) return await response.blob();
      lastError = new ApiError(response.status, describeHttpError(response.status, (await readJson(response))?.detail));
    } catch (error) {
      lastError = error;
    }
  }
  throw new ApiError(lastError?.status ?? 0, `The result could not be downloaded: ${lastError?.message ?? "unknown error"}`);
}
