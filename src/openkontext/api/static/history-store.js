// The playground's history, kept in this browser (IndexedDB, per server origin), bounded, so it survives a reload.
//
// Two object stores: "steps" (one record per result, keyed by its step number n) and "images" (the result images
// and the input images they were made from, as Blobs, each stored once however many steps use it). A step made from
// an earlier result points at that result's image, so a chain of edits stores each image once. The result images
// themselves are kept, not their signed URLs: those expire (OPENKONTEXT_DELIVERY_TTL_S) and the task itself is
// purged after OPENKONTEXT_RETENTION_S, while the history should still show and continue from every step it lists.

const DB_NAME = "openkontext-playground";
const DB_VERSION = 1;

/** At most this many steps, and this many bytes of images (results and inputs, each counted once). */
export const HISTORY_LIMITS = Object.freeze({ steps: 50, bytes: 100 * 1024 * 1024 });

/** One step whose images alone are over the byte bound: it is not stored (nothing else is dropped for it). */
export class HistoryTooLarge extends Error {
  constructor(bytes, limit) {
    super(`the step's images take ${megabytes(bytes)}, more than the history keeps (${megabytes(limit)})`);
    this.name = "HistoryTooLarge";
  }
}

export function megabytes(bytes) {
  const value = bytes / (1024 * 1024);
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MB`;
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Run ``work(tx)`` in one readwrite transaction over both stores: all of it is stored, or none of it. */
async function inTransaction(db, work) {
  const tx = db.transaction(["steps", "images"], "readwrite");
  const finished = new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new DOMException("The transaction was aborted.", "AbortError"));
  });
  finished.catch(() => {}); // awaited below; this only keeps an early abort from counting as unhandled
  try {
    const result = await work(tx.objectStore("steps"), tx.objectStore("images"));
    await finished; // a full disk is reported here, at commit, as a QuotaExceededError
    return result;
  } catch (error) {
    try {
      tx.abort();
    } catch {
      // already committed or aborting
    }
    await finished.catch(() => {});
    throw error;
  }
}

const imagesOf = (step) => [...new Set([step.result, step.input?.image].filter((id) => id != null))];

/** Drop the oldest steps until the bounds hold, then every image no remaining step uses; the dropped step numbers. */
async function evict(steps, images, limits, newest = null) {
  const all = await done(steps.getAll()); // ascending n: oldest first
  const sizes = new Map((await done(images.getAll())).map((image) => [image.id, image.size]));
  const uses = new Map();
  for (const step of all) for (const id of imagesOf(step)) uses.set(id, (uses.get(id) || 0) + 1);
  let bytes = 0;
  for (const id of uses.keys()) bytes += sizes.get(id) || 0;
  const dropped = [];
  while (all.length && (all.length > limits.steps || bytes > limits.bytes)) {
    const oldest = all[0];
    if (oldest.n === newest) throw new HistoryTooLarge(bytes, limits.bytes);
    all.shift();
    dropped.push(oldest.n);
    steps.delete(oldest.n);
    for (const id of imagesOf(oldest)) {
      const left = uses.get(id) - 1;
      if (left > 0) uses.set(id, left);
      else {
        uses.delete(id);
        bytes -= sizes.get(id) || 0;
      }
    }
  }
  for (const id of sizes.keys()) if (!uses.has(id)) images.delete(id);
  return dropped;
}

class HistoryStore {
  constructor(db) {
    this.db = db;
  }

  /** Every stored step, oldest first, with its images as Blobs (``resultBlob``, ``inputBlob``). */
  async load() {
    const tx = this.db.transaction(["steps", "images"], "readonly");
    const [steps, images] = await Promise.all([
      done(tx.objectStore("steps").getAll()),
      done(tx.objectStore("images").getAll()),
    ]);
    const blobs = new Map(images.map((image) => [image.id, image.blob]));
    const complete = (step) => blobs.has(step.result) && (!step.input || blobs.has(step.input.image));
    return steps.filter(complete).map((step) => ({
      ...step,
      resultBlob: blobs.get(step.result),
      inputBlob: step.input ? blobs.get(step.input.image) : null,
    }));
  }

  /**
   * Store one step: ``record`` is {n, …, input: {label, path, parent, image} | null} where ``input.image`` is the id
   * of an image already stored (a previous result, or an input used before) or null; ``blobs`` holds the result and
   * the input image (used when that id is null or no longer stored). The step's number is ``record.n`` or, if
   * another tab stored that number meanwhile, the next free one. Then the oldest steps beyond ``limits`` are dropped.
   * Returns {n, resultImage, inputImage, dropped}.
   */
  async add(record, blobs, limits = HISTORY_LIMITS) {
    return inTransaction(this.db, async (steps, images) => {
      const last = await done(steps.openKeyCursor(null, "prev"));
      const n = Math.max(record.n, last ? last.key + 1 : 1);
      const resultImage = await done(images.add({ blob: blobs.result, size: blobs.result.size }));
      let input = null;
      if (record.input) {
        let image = record.input.image ?? null;
        if (image === null || (await done(images.getKey(image))) === undefined) {
          image = await done(images.add({ blob: blobs.input, size: blobs.input.size }));
        }
        input = { ...record.input, image };
      }
      await done(steps.put({ ...record, n, result: resultImage, input }));
      const dropped = await evict(steps, images, limits, n);
      return { n, resultImage, inputImage: input ? input.image : null, dropped };
    });
  }

  /** Keep only the newest ``keep`` steps (to make room when the browser's storage is full); the dropped numbers. */
  async trim(keep) {
    return inTransaction(this.db, (steps, images) => evict(steps, images, { steps: keep, bytes: Infinity }));
  }

  /** {steps, images, bytes} as stored. */
  async usage() {
    const tx = this.db.transaction(["steps", "images"], "readonly");
    const [steps, images] = await Promise.all([
      done(tx.objectStore("steps").count()),
      done(tx.objectStore("images").getAll()),
    ]);
    return { steps, images: images.length, bytes: images.reduce((sum, image) => sum + image.size, 0) };
  }

  async clear() {
    return inTransaction(this.db, async (steps, images) => {
      steps.clear();
      images.clear();
    });
  }
}

/** The history store, or null where this browser keeps no IndexedDB for the page (then it lasts until reload). */
export async function openHistory(name = DB_NAME) {
  try {
    if (!globalThis.indexedDB) return null;
    const request = indexedDB.open(name, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains("steps")) db.createObjectStore("steps", { keyPath: "n" });
      if (!db.objectStoreNames.contains("images")) {
        db.createObjectStore("images", { keyPath: "id", autoIncrement: true });
      }
    };
    const db = await done(request);
    db.onversionchange = () => db.close(); // a newer page in another tab upgrades the schema
    return new HistoryStore(db);
  } catch {
    return null;
  }
}
