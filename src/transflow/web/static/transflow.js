// transflow's browser client: upload files (presigned POST, or S3 multipart for big files)
// and follow their processing over Server-Sent Events. One ES module, no dependencies, no
// build step; served from the Python package (transflow.web_asset("transflow.js")).
// Types: transflow.d.ts next to this file. Guide: docs/browser.md.

export const DEFAULT_PARALLEL = 4;
export const DEFAULT_RETRIES = 5;
/** Part URLs asked for per sign-parts call: a few at a time, so none waits long enough to expire. */
export const SIGN_BATCH = 4;
/** A signed URL closer than this to its expiry is signed again before use. */
export const URL_MARGIN_MS = 60_000;
export const MAX_PARTS = 10_000;
const STORE_PREFIX = "transflow:upload:";
const FOLLOW_PREFIX = "transflow:follow:";
const TERMINAL = new Set(["completed", "error", "cancelled"]);

// -- errors ----------------------------------------------------------------------------------

/** Every failure this module reports: what went wrong and what to do, with the server's
 * error class (`code`) and the HTTP status (0 for a network failure) when there was one. */
export class TransflowError extends Error {
  constructor(message, { code = "TransflowError", status = 0, retryable = false, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "TransflowError";
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}

/** The upload was stopped by `abort()` (`code` "aborted") or `pause()` (`code` "paused"). */
export class UploadStoppedError extends TransflowError {
  constructor(how) {
    super(
      how === "paused"
        ? "the upload was paused: call upload() with the same files to resume it"
        : "the upload was aborted: its multipart uploads are aborted and nothing resumes",
      { code: how },
    );
    this.name = "UploadStoppedError";
  }
}

/** Some files failed; `failures` says which and why. The others were uploaded, and the
 * failed ones resume when upload() is called again with the same files. */
export class UploadFailedError extends TransflowError {
  constructor(failures) {
    const list = failures.map((f) => `${f.name}: ${f.error.message}`).join("; ");
    super(`${failures.length} file(s) could not be uploaded (${list}); call upload() with the same files to resume`, {
      code: "UploadFailed",
    });
    this.name = "UploadFailedError";
    this.failures = failures;
  }
}

// -- pure parts: sizes, part plans, backoff, byte accounting, resume records, events --------

/** "12.0 MiB": bytes for people (binary units, one decimal from KiB up). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The byte ranges of a multipart upload's parts, numbered from 1, as the ticket planned them. */
export function planParts(size, partSize, partCount) {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new TransflowError(`file size ${size} is not a byte count`);
  }
  if (!Number.isSafeInteger(partSize) || partSize <= 0) {
    throw new TransflowError(`part size ${partSize} is not a positive byte count: ask the server for a new ticket`);
  }
  const count = Math.max(1, Math.ceil(size / partSize));
  if (count > MAX_PARTS) {
    throw new TransflowError(`${size} bytes in ${partSize}-byte parts makes ${count} parts, over S3's ${MAX_PARTS}`);
  }
  if (partCount !== undefined && partCount !== count) {
    throw new TransflowError(
      `the ticket plans ${partCount} parts of ${partSize} bytes for ${size} bytes, which makes ${count}: ` +
        "the file is not the one the ticket was made for; ask the server for a new ticket",
    );
  }
  const parts = [];
  for (let n = 1; n <= count; n += 1) {
    const start = (n - 1) * partSize;
    parts.push({ partNumber: n, start, end: Math.min(size, start + partSize) });
  }
  return parts;
}

/** Whether a request that failed with `status` may succeed if sent again (0: no answer). */
export function isRetryable(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/** Full-jitter exponential backoff: a random wait in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt, { base = 500, cap = 20_000, random = Math.random } = {}) {
  return Math.floor(random() * Math.min(cap, base * 2 ** attempt));
}

/** Runs `fn(attempt)` until it succeeds, an error is not `retryable`, `retries` retries were
 * spent, or `stopped()` says so; waits `backoffDelay` between attempts. */
export async function withRetry(fn, { retries = DEFAULT_RETRIES, base, cap, random, sleep = delay, stopped = () => null, onRetry } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (err) {
      const stop = stopped();
      if (stop) throw stop;
      if (!(err instanceof TransflowError) || !err.retryable || attempt >= retries) throw err;
      if (onRetry) onRetry(err, attempt + 1);
      await sleep(backoffDelay(attempt, { base, cap, random }));
      const after = stopped();
      if (after) throw after;
    }
  }
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Bytes per file: `acknowledged` counts only what S3 confirmed (a part with its ETag, a
 * POST with its 2xx), once per part however often it was sent; `loaded` adds what is on
 * its way now, and falls back when a part fails and is sent again; `sent` counts every
 * byte put on the wire, retries and re-sends included. */
export class ByteProgress {
  constructor(sizes) {
    this.files = sizes.map((size) => ({ size, acked: new Map(), inflight: new Map() }));
    this.sent = 0;
    this.resumed = 0;
  }

  /** Part `part` of file `file` has `bytes` of its bytes out (from the upload's progress events). */
  sending(file, part, bytes) {
    const f = this.files[file];
    if (f.acked.has(part)) return;
    const now = Math.max(0, bytes);
    const before = f.inflight.get(part) ?? 0;
    if (now > before) this.sent += now - before;
    f.inflight.set(part, now);
  }

  /** S3 confirmed `bytes` of part `part`. Idempotent: a part confirmed twice counts once. */
  acknowledge(file, part, bytes, { resumed = false } = {}) {
    const f = this.files[file];
    f.inflight.delete(part);
    if (f.acked.has(part)) return false;
    f.acked.set(part, bytes);
    if (resumed) this.resumed += bytes;
    return true;
  }

  /** The part's attempt failed: what it had out no longer counts as loaded. */
  failed(file, part) {
    this.files[file].inflight.delete(part);
  }

  file(index) {
    const f = this.files[index];
    let acknowledged = 0;
    for (const bytes of f.acked.values()) acknowledged += bytes;
    let loaded = acknowledged;
    for (const bytes of f.inflight.values()) loaded += bytes;
    return { size: f.size, acknowledged, loaded: Math.min(loaded, f.size) };
  }

  totals() {
    let acknowledged = 0;
    let loaded = 0;
    let total = 0;
    this.files.forEach((_, i) => {
      const f = this.file(i);
      acknowledged += f.acknowledged;
      loaded += f.loaded;
      total += f.size;
    });
    return { acknowledged, loaded, total, sent: this.sent, resumed: this.resumed };
  }
}

/** The storage key of an upload of these files: their names, sizes and modification times. */
export function resumeKey(files) {
  return STORE_PREFIX + files.map((f) => `${f.name}:${f.size}:${f.lastModified ?? 0}`).join("|");
}

/** What a page keeps in localStorage to resume an upload after a refresh: the ticket, the
 * files already complete, and the ETag of every part S3 confirmed. */
export class ResumeStore {
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
    this.record = null;
  }

  /** The saved record, if it is still usable at `now` (ms), else null (and forgotten). */
  load(now = Date.now()) {
    if (!this.storage) return null;
    let record;
    try {
      record = JSON.parse(this.storage.getItem(this.key) || "null");
    } catch {
      record = null;
    }
    if (!record || record.version !== 1 || !record.ticket || !Array.isArray(record.ticket.files)) {
      this.clear();
      return null;
    }
    if (!resumable(record, now)) {
      this.clear();
      return null;
    }
    this.record = record;
    return record;
  }

  start(ticket) {
    this.record = { version: 1, ticket, done: [], parts: {} };
    this.save();
    return this.record;
  }

  part(file, partNumber, etag, size) {
    const parts = (this.record.parts[file] ??= {});
    parts[partNumber] = { etag, size };
    this.save();
  }

  fileDone(file) {
    if (!this.record.done.includes(file)) this.record.done.push(file);
    this.save();
  }

  save() {
    if (!this.storage || !this.record) return;
    try {
      this.storage.setItem(this.key, JSON.stringify(this.record));
    } catch {
      // A full or disabled storage costs the resume after a refresh, not the upload.
    }
  }

  clear() {
    this.record = null;
    if (this.storage) this.storage.removeItem(this.key);
  }
}

function resumable(record, now) {
  const { ticket } = record;
  const pending = ticket.files.filter((_, i) => !record.done.includes(i));
  const posts = pending.some((f) => methodOf(f) === "post");
  const multipart = pending.some((f) => methodOf(f) === "multipart");
  // Presigned POSTs die with the ticket; part URLs are signed on demand with the stream token.
  if (posts && ticket.expiresAt && Date.parse(ticket.expiresAt) <= now) return false;
  if (multipart && ticket.streamTokenExpiresAt && Date.parse(ticket.streamTokenExpiresAt) <= now) return false;
  return true;
}

function methodOf(target) {
  return target.method === "multipart" ? "multipart" : "post";
}

/** A parsed progress event (the JSON of an SSE message), or null for data that is not one. */
export function parseEvent(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return null;
  }
  if (!event || typeof event !== "object" || typeof event.type !== "string") return null;
  return event;
}

/** The kind an event is handled as: "progress", "step", "output", "done", "error",
 * "retrying", "cancelled", "start", or its own type for kinds this client does not know. */
export function eventKind(event) {
  if (event.type === "step:start" || event.type === "step:done") return "step";
  if (event.type === "error" && event.retrying === true) return "retrying";
  if (event.type === "canceled") return "cancelled";
  return event.type;
}

export function initialStatus() {
  return { state: "queued", percent: 0, steps: [], outputs: [] };
}

/** The status after a `snapshot` event: the server's folded view replaces ours. */
export function applySnapshot(status, snapshot) {
  if (!snapshot || typeof snapshot !== "object") return status;
  const next = { ...status, ...snapshot };
  next.steps = Array.isArray(snapshot.steps) ? snapshot.steps : status.steps;
  next.outputs = Array.isArray(snapshot.outputs) ? snapshot.outputs : status.outputs;
  if (snapshot.state === "completed") next.percent = 100;
  return next;
}

function withStep(steps, name, state, percent) {
  let found = false;
  const out = steps.map((step) => {
    if (step.name !== name) return step;
    found = true;
    return { ...step, state: state ?? step.state, percent: percent ?? step.percent };
  });
  if (!found) out.push({ name, state: state ?? "running", percent: percent ?? null });
  return out;
}

/** The status after one event, folded as the server's snapshot is (transflow.snapshot):
 * terminal states stick, except for the `start` of a new run with a higher seq. */
export function foldStatus(status, event) {
  let next = { ...status };
  let finished = TERMINAL.has(status.state);
  if (event.type === "start" && finished && event.seq > (status.lastSeq ?? Infinity)) {
    next = { ...initialStatus(), state: "processing" };
    finished = false;
  }
  if (event.seq !== undefined) {
    next.lastSeq = event.seq;
    next.lastEventId = `${event.uploadId}:${event.seq}`;
  }
  const kind = eventKind(event);
  if (event.type === "start" && !finished) {
    next.state = "processing";
    next.percent = 0;
    delete next.error;
  } else if (event.type === "step:start" && event.step) {
    next.steps = withStep(next.steps ?? [], event.step, "running", null);
  } else if (kind === "progress") {
    if (event.step) next.steps = withStep(next.steps ?? [], event.step, null, event.percent ?? null);
    if (event.percent !== undefined && !finished) next.percent = event.percent;
  } else if (event.type === "step:done" && event.step) {
    next.steps = withStep(next.steps ?? [], event.step, "done", 100);
  } else if (kind === "output" && event.key) {
    const outputs = next.outputs ?? [];
    if (!outputs.some((o) => o.key === event.key)) {
      next.outputs = [...outputs, { key: event.key, name: event.name, bucket: event.bucket, step: event.step }];
    }
  } else if (kind === "done") {
    next.state = "completed";
    next.percent = 100;
  } else if (kind === "retrying") {
    if (!finished) {
      next.state = "retrying";
      next.error = event.message || "attempt failed";
    }
  } else if (kind === "error") {
    next.state = "error";
    next.error = event.message || "processing failed";
    if (event.step) next.steps = withStep(next.steps ?? [], event.step, "error", null);
  } else if (kind === "cancelled") {
    if (!finished) {
      next.state = "cancelled";
      next.error = event.message || "cancelled";
    }
  }
  if (["step:start", "progress", "output"].includes(event.type) && next.state === "queued") {
    next.state = "processing"; // the start event may have been missed
  }
  return next;
}

/** Whether a status is an end state: "completed", "error" or "cancelled". */
export function isFinished(status) {
  return TERMINAL.has(status.state);
}

// -- HTTP -------------------------------------------------------------------------------------

function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // storage disabled (privacy settings, sandboxed frames)
  }
}

async function callJson(fetchImpl, url, body, headers) {
  let response;
  try {
    response = await fetchImpl(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new TransflowError(`no answer from ${url} (${err.message}); check the connection`, { retryable: true, cause: err });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.message || data.error)) || `${url} answered ${response.status}`;
    throw new TransflowError(message, {
      code: (data && data.error) || `HTTP${response.status}`,
      status: response.status,
      retryable: isRetryable(response.status),
    });
  }
  return data;
}

/** One XMLHttpRequest (fetch cannot report upload progress): resolves with the status and
 * the ETag header for any answer, rejects (retryably) when there was no answer. */
function send(XHR, method, url, body, { onProgress, track, wantEtag = false }) {
  return new Promise((resolve, reject) => {
    const xhr = new XHR();
    const untrack = track(xhr);
    xhr.open(method, url);
    if (xhr.upload) xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
    xhr.onload = () => {
      untrack();
      // Only part PUTs read the ETag: a header CORS does not expose logs an error in the console.
      resolve({ status: xhr.status, etag: wantEtag ? xhr.getResponseHeader("ETag") : null, text: xhr.responseText });
    };
    xhr.onerror = () => {
      untrack();
      reject(new TransflowError(`no answer to ${method} ${url.split("?")[0]}; it will be retried`, { retryable: true }));
    };
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => {
      untrack();
      reject(new TransflowError("the request was cancelled", { code: "cancelled" }));
    };
    xhr.send(body);
  });
}

function refused(what, answer) {
  const status = answer.status;
  const detail = (answer.text || "").match(/<Code>([^<]+)<\/Code>/);
  return new TransflowError(`S3 refused ${what}: ${status}${detail ? ` ${detail[1]}` : ""}`, {
    code: detail ? detail[1] : `HTTP${status}`,
    status,
    retryable: isRetryable(status),
  });
}

// -- multipart: part URLs signed on demand -----------------------------------------------------

/** The signed URLs of one multipart file's parts, asked for a few at a time as parts need
 * them, and again when one is about to expire or S3 refused it (403). */
export class PartUrls {
  constructor(sign, { batch = SIGN_BATCH, now = Date.now } = {}) {
    this.sign = sign; // (partNumbers) => Promise<{parts: [{partNumber, url}], expiresAt}>
    this.batch = batch;
    this.now = now;
    this.urls = new Map();
    this.pending = new Map();
    this.calls = 0;
  }

  fresh(n) {
    const signed = this.urls.get(n);
    return signed !== undefined && signed.expiresAt - this.now() > URL_MARGIN_MS;
  }

  /** The URL of part `n`; `upcoming` are the parts that will be needed next, signed in the
   * same call while there is room in the batch. */
  async get(n, upcoming = []) {
    for (let tries = 0; tries < 3; tries += 1) {
      if (this.fresh(n)) return this.urls.get(n).url;
      const waiting = this.pending.get(n);
      if (waiting) {
        await waiting;
        continue;
      }
      const wanted = [n, ...upcoming.filter((m) => m !== n && !this.fresh(m) && !this.pending.has(m))].slice(0, this.batch);
      const call = this.fetch(wanted);
      for (const m of wanted) this.pending.set(m, call);
      try {
        await call;
      } finally {
        for (const m of wanted) this.pending.delete(m);
      }
    }
    throw new TransflowError(`the server signed no usable URL for part ${n}; check its sign-parts endpoint`);
  }

  async fetch(partNumbers) {
    this.calls += 1;
    const answer = await this.sign(partNumbers);
    const expiresAt = Date.parse(answer.expiresAt);
    for (const part of answer.parts || []) {
      this.urls.set(part.partNumber, { url: part.url, expiresAt: Number.isNaN(expiresAt) ? this.now() + 2 * URL_MARGIN_MS : expiresAt });
    }
  }

  forget(n) {
    this.urls.delete(n);
  }
}

/** At most `size` transfers at once across every file of an upload. */
class Slots {
  constructor(size) {
    this.free = size;
    this.waiting = [];
  }

  async acquire() {
    if (this.free > 0) {
      this.free -= 1;
      return;
    }
    await new Promise((resolve) => this.waiting.push(resolve));
  }

  release() {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}

// -- upload -----------------------------------------------------------------------------------

/** Uploads `files`: asks `ticketUrl` for a ticket, then sends each file the way the ticket
 * says (a presigned POST, or S3 multipart in parallel parts), resuming what a previous
 * page already sent. Returns at once; `done` settles when every file is in S3. */
export function upload(files, options) {
  return new UploadTask(Array.from(files), options);
}

class UploadTask {
  constructor(files, options = {}) {
    if (!options.ticketUrl) throw new TransflowError("upload() needs options.ticketUrl, the host's create-upload endpoint");
    if (!files.length) throw new TransflowError("upload() needs at least one file");
    this.files = files;
    this.options = options;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.XHR = options.XMLHttpRequest ?? globalThis.XMLHttpRequest;
    this.parallel = Math.max(1, options.parallel ?? DEFAULT_PARALLEL);
    this.store = new ResumeStore(options.storage === undefined ? defaultStorage() : options.storage, resumeKey(files));
    this.progress = new ByteProgress(files.map((f) => f.size));
    this.slots = new Slots(this.parallel);
    this.requests = new Set();
    this.stopReason = null;
    this.ticketValue = null;
    this.completed = new Set();
    this.resumed = false;
    let onTicket;
    this.ticket = new Promise((resolve, reject) => {
      onTicket = { resolve, reject };
    });
    this.ticket.catch(() => {}); // observed through done
    this.resolveTicket = onTicket.resolve;
    this.done = this.run().catch((err) => {
      onTicket.reject(err);
      throw err;
    });
  }

  /** Stops sending and aborts the multipart uploads on S3; nothing of it can resume. */
  async abort() {
    this.stop("aborted");
    this.store.clear();
    await this.abortRemote();
  }

  async abortRemote() {
    const ticket = this.ticketValue;
    if (!ticket) return; // run() aborts them once the ticket comes
    const calls = ticket.files.map((target, i) =>
      methodOf(target) === "multipart" && !this.completed.has(i)
        ? this.api("abort", { uploadId: ticket.uploadId, key: target.key, multipartUploadId: target.multipartUploadId }).catch((err) => {
            if (err.status !== 404) throw err; // already gone is what abort wants
          })
        : null,
    );
    await Promise.all(calls);
  }

  /** Stops sending and keeps what S3 has: upload() with the same files resumes. */
  pause() {
    this.stop("paused");
  }

  stop(how) {
    if (!this.stopReason) this.stopReason = new UploadStoppedError(how);
    for (const xhr of this.requests) xhr.abort();
  }

  stopped() {
    return this.stopReason;
  }

  track(xhr) {
    this.requests.add(xhr);
    return () => this.requests.delete(xhr);
  }

  /** The byte counts now: per file and in total (see ByteProgress). */
  snapshot() {
    const files = this.files.map((file, i) => ({
      name: file.name,
      ...this.progress.file(i),
      method: this.ticketValue ? methodOf(this.ticketValue.files[i]) : undefined,
      done: this.completed.has(i),
    }));
    return { files, ...this.progress.totals(), resumedUpload: this.resumed };
  }

  emit() {
    if (this.options.onProgress) this.options.onProgress(this.snapshot());
  }

  api(action, body) {
    if (!this.options.multipartUrl) {
      throw new TransflowError("this upload has multipart files: pass options.multipartUrl (the host's multipart endpoints)");
    }
    const base = this.options.multipartUrl.replace(/\/+$/, "");
    const token = this.ticketValue && this.ticketValue.streamToken;
    const headers = { ...(this.options.headers ?? {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    return withRetry(() => callJson(this.fetch, `${base}/${action}`, body, headers), this.retryOptions());
  }

  retryOptions() {
    return {
      retries: this.options.retries ?? DEFAULT_RETRIES,
      base: this.options.retryBase,
      sleep: this.options.sleep,
      stopped: () => this.stopped(),
    };
  }

  async newTicket() {
    const body = {
      ...(this.options.body ?? {}),
      files: this.files.map((f) => ({ name: f.name, type: f.type || null, size: f.size })),
    };
    const ticket = await withRetry(() => callJson(this.fetch, this.options.ticketUrl, body, this.options.headers ?? {}), this.retryOptions());
    if (!ticket || !Array.isArray(ticket.files) || ticket.files.length !== this.files.length) {
      throw new TransflowError(`${this.options.ticketUrl} answered a ticket for ${ticket?.files?.length ?? 0} files, not ${this.files.length}`);
    }
    return ticket;
  }

  async run() {
    let record = this.store.load();
    if (record) {
      this.ticketValue = record.ticket;
      this.resumed = true;
      if (!(await this.restore(record))) {
        this.store.clear();
        record = null;
        this.resumed = false;
        this.progress = new ByteProgress(this.files.map((f) => f.size));
      }
    }
    if (!record) {
      this.ticketValue = await this.newTicket();
      record = this.store.start(this.ticketValue);
    }
    const ticket = this.ticketValue;
    if (this.stopped()) {
      // Stopped while the ticket was on its way: abort() found nothing to abort yet.
      if (this.stopped().code === "aborted") {
        this.store.clear();
        await this.abortRemote();
      }
      throw this.stopped();
    }
    this.resolveTicket(ticket);
    if (this.options.onTicket) this.options.onTicket(ticket, { resumed: this.resumed });
    this.emit();
    const outcomes = await Promise.allSettled(ticket.files.map((target, i) => this.sendFile(target, i)));
    if (this.stopped()) throw this.stopped();
    const failures = outcomes
      .map((outcome, i) => (outcome.status === "rejected" ? { name: this.files[i].name, index: i, error: outcome.reason } : null))
      .filter(Boolean);
    if (failures.length) throw new UploadFailedError(failures);
    this.store.clear();
    const totals = this.progress.totals();
    return {
      ticket,
      uploadId: ticket.uploadId,
      resumedUpload: this.resumed,
      files: ticket.files.map((target, i) => ({ name: this.files[i].name, key: target.key, size: this.files[i].size, method: methodOf(target) })),
      ...totals,
    };
  }

  /** Takes up a saved record: what S3 has of each unfinished multipart file (list-parts is
   * the truth, not the record). False when it cannot resume (the upload is gone). */
  async restore(record) {
    const { ticket } = record;
    if (ticket.files.length !== this.files.length) return false;
    try {
      await Promise.all(
        ticket.files.map(async (target, i) => {
          if (record.done.includes(i)) {
            this.completed.add(i);
            this.progress.acknowledge(i, 0, this.files[i].size, { resumed: true });
            return;
          }
          if (methodOf(target) !== "multipart") return;
          const plan = planParts(this.files[i].size, target.partSize, target.partCount);
          const listed = await this.api("list-parts", { uploadId: ticket.uploadId, key: target.key, multipartUploadId: target.multipartUploadId });
          const saved = {};
          for (const part of listed.parts || []) {
            const planned = plan[part.partNumber - 1];
            // A part of another size is not ours to keep: it is sent again.
            if (planned && part.size === planned.end - planned.start) {
              saved[part.partNumber] = { etag: part.etag, size: part.size };
              this.progress.acknowledge(i, part.partNumber, part.size, { resumed: true });
            }
          }
          record.parts[i] = saved;
        }),
      );
    } catch (err) {
      if (err instanceof TransflowError && (err.status === 404 || err.status === 409 || err.status === 401 || err.status === 403)) {
        return false; // aborted, expired or completed elsewhere: start again
      }
      throw err;
    }
    this.store.record = record;
    this.store.save();
    return true;
  }

  async sendFile(target, i) {
    if (this.completed.has(i)) return;
    if (methodOf(target) === "multipart") await this.sendMultipart(target, i);
    else await this.sendPost(target, i);
    this.completed.add(i);
    this.store.fileDone(i);
    this.emit();
  }

  async sendPost(target, i) {
    const file = this.files[i];
    await withRetry(async () => {
      await this.slots.acquire();
      try {
        if (this.stopped()) throw this.stopped();
        const form = new FormData();
        for (const [name, value] of Object.entries(target.fields)) form.append(name, value);
        form.append("file", file); // last: S3 ignores the fields after the file
        this.progress.sending(i, 0, 0);
        const answer = await send(this.XHR, "POST", target.url, form, {
          // The form's fields and boundaries are counted in the request, not in the file.
          onProgress: (loaded, total) => {
            this.progress.sending(i, 0, Math.min(file.size, loaded - (total - file.size)));
            this.emit();
          },
          track: (xhr) => this.track(xhr),
        });
        if (answer.status < 200 || answer.status >= 300) throw refused(file.name, answer);
        this.progress.acknowledge(i, 0, file.size);
      } catch (err) {
        this.progress.failed(i, 0);
        throw this.stopped() ?? err;
      } finally {
        this.slots.release();
      }
    }, this.retryOptions());
  }

  async sendMultipart(target, i) {
    const file = this.files[i];
    const ticket = this.ticketValue;
    const ids = { uploadId: ticket.uploadId, key: target.key, multipartUploadId: target.multipartUploadId };
    const plan = planParts(file.size, target.partSize, target.partCount);
    const have = this.store.record.parts[i] ?? {};
    const missing = plan.filter((p) => !have[p.partNumber]);
    const urls = new PartUrls((partNumbers) => this.api("sign-parts", { ...ids, partNumbers }), {
      batch: Math.min(this.options.signBatch ?? SIGN_BATCH, 10),
    });
    const queue = [...missing];
    const worker = async () => {
      for (let part = queue.shift(); part; part = queue.shift()) {
        // Sign ahead for the parts the other workers hold or will take, not only for this one.
        const upcoming = () => missing.filter((p) => !this.progress.files[i].acked.has(p.partNumber)).map((p) => p.partNumber);
        await this.sendPart(file, i, part, urls, upcoming);
      }
    };
    const workers = Array.from({ length: Math.min(this.parallel, missing.length) }, worker);
    const results = await Promise.allSettled(workers);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const saved = this.store.record.parts[i];
    const parts = plan.map((p) => ({ partNumber: p.partNumber, etag: saved[p.partNumber].etag }));
    const answer = await this.api("complete", { ...ids, parts });
    if (answer && typeof answer.size === "number" && answer.size !== file.size) {
      throw new TransflowError(`S3 assembled ${answer.size} bytes of ${file.name}, not ${file.size}; upload it again`);
    }
  }

  async sendPart(file, i, part, urls, upcoming) {
    const n = part.partNumber;
    const bytes = part.end - part.start;
    await withRetry(async () => {
      await this.slots.acquire();
      try {
        if (this.stopped()) throw this.stopped();
        const url = await urls.get(n, upcoming());
        this.progress.sending(i, n, 0);
        const answer = await send(this.XHR, "PUT", url, file.slice(part.start, part.end), {
          onProgress: (loaded) => {
            this.progress.sending(i, n, Math.min(bytes, loaded));
            this.emit();
          },
          track: (xhr) => this.track(xhr),
          wantEtag: true,
        });
        if (answer.status === 403) {
          urls.forget(n); // expired or refused signature: the retry signs it again
          throw new TransflowError(`S3 refused the URL of part ${n} (403); signing it again`, { status: 403, retryable: true });
        }
        if (answer.status < 200 || answer.status >= 300) throw refused(`part ${n} of ${file.name}`, answer);
        if (!answer.etag) {
          throw new TransflowError(
            `S3 answered part ${n} of ${file.name} without an ETag the page can read: the bucket's CORS rules must expose ETag (ExposeHeaders)`,
            { code: "NoETag" },
          );
        }
        this.progress.acknowledge(i, n, bytes);
        this.store.part(i, n, answer.etag, bytes);
        this.emit();
      } catch (err) {
        this.progress.failed(i, n);
        this.emit();
        throw this.stopped() ?? err;
      } finally {
        this.slots.release();
      }
    }, this.retryOptions());
  }
}

// -- follow -----------------------------------------------------------------------------------

/** Follows an upload's progress over Server-Sent Events: the snapshot first, then each
 * event, folded into `status`; `done` resolves with the end state (completed, error or
 * cancelled) and the stream is closed. `target` is a ticket, a channel
 * ("upload:{branch}:{uploadId}") or an upload id (with options.branch, default "main"). */
export function follow(target, token, options = {}) {
  return new Follow(target, token, options);
}

/** The query of the SSE endpoint for a target, its token and the last event seen. */
export function streamQuery(target, token, { branch = "main", lastEventId } = {}) {
  const params = new URLSearchParams();
  let channel;
  if (target && typeof target === "object") {
    channel = `upload:${target.branch}:${target.uploadId}`;
    token = token ?? target.streamToken;
  } else if (String(target).includes(":")) {
    channel = String(target);
  } else {
    channel = `upload:${branch}:${target}`;
  }
  params.set("channel", channel);
  if (token) params.set("token", token);
  if (lastEventId) params.set("lastEventId", lastEventId);
  return { channel, query: params.toString() };
}

class Follow {
  constructor(target, token, options) {
    this.ES = options.EventSource ?? globalThis.EventSource;
    this.fetch = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null);
    this.sleep = options.sleep ?? delay;
    this.options = options;
    this.target = target;
    this.token = token;
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.channel = streamQuery(target, token, options).channel;
    this.storeKey = FOLLOW_PREFIX + this.channel;
    // After a page refresh, the last event this page saw: the server replays what came after.
    this.lastEventId = options.lastEventId ?? this.stored();
    this.status = initialStatus();
    this.snapshotSeen = false;
    this.handlers = new Map();
    this.reconnects = 0;
    this.closed = false;
    this.done = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.done.catch(() => {}); // a page that only watches status is not told twice
    this.open();
  }

  open() {
    const { query } = streamQuery(this.target, this.token, { ...this.options, lastEventId: this.lastEventId });
    const base = this.options.url ?? "events";
    this.url = `${base}${base.includes("?") ? "&" : "?"}${query}`;
    // EventSource cannot send headers: the token travels in the query, and on a reconnect
    // the browser sends Last-Event-ID itself.
    this.source = new this.ES(this.url);
    this.source.addEventListener("snapshot", (e) => this.onSnapshot(e));
    this.source.onmessage = (e) => this.onMessage(e);
    this.source.onerror = () => this.onError();
  }

  /** Calls `fn(event, status)` for events of `kind` ("progress", "step", "output", "done",
   * "error", "retrying", "cancelled", "start", "snapshot" or "*" for all). */
  on(kind, fn) {
    const list = this.handlers.get(kind) ?? [];
    list.push(fn);
    this.handlers.set(kind, list);
    return this;
  }

  close() {
    this.closed = true;
    this.source.close();
  }

  stored() {
    try {
      return (this.storage && this.storage.getItem(this.storeKey)) || undefined;
    } catch {
      return undefined;
    }
  }

  remember(id) {
    if (!id) return;
    this.lastEventId = id;
    try {
      if (this.storage) this.storage.setItem(this.storeKey, id);
    } catch {
      // without storage, a refresh resumes from the snapshot alone
    }
  }

  dispatch(kind, payload) {
    for (const fn of [...(this.handlers.get(kind) ?? []), ...(this.handlers.get("*") ?? [])]) fn(payload, this.status);
    if (this.options.onStatus) this.options.onStatus(this.status, payload);
  }

  onSnapshot(e) {
    this.snapshotSeen = true;
    this.status = applySnapshot(this.status, safeJson(e.data));
    this.remember(this.status.lastEventId);
    this.dispatch("snapshot", this.status);
    this.finishIfDone();
  }

  onMessage(e) {
    const event = parseEvent(e.data);
    if (!event) return; // not an event of ours: ignored rather than ending the stream
    this.status = foldStatus(this.status, event);
    this.remember(e.lastEventId || this.status.lastEventId);
    this.dispatch(eventKind(event), event);
    this.finishIfDone();
  }

  onError() {
    // CONNECTING: the browser reconnects by itself, with Last-Event-ID. CLOSED: it gave up
    // for good after an answer other than a 200 stream (a refused token, a full server's
    // 503), which it cannot read: ask again with fetch, then reconnect or stop.
    if (this.source.readyState !== 2 || isFinished(this.status) || this.closed) return;
    this.reconnect().catch((err) => this.fail(err));
  }

  async reconnect() {
    this.reconnects += 1;
    const limit = this.options.maxReconnects ?? 8;
    let status = 0;
    let retryAfter = null;
    if (this.fetch) {
      const probe = new AbortController();
      try {
        const answer = await this.fetch(this.url, { signal: probe.signal, headers: { Accept: "text/event-stream" } });
        status = answer.status;
        retryAfter = answer.headers && answer.headers.get ? answer.headers.get("Retry-After") : null;
      } catch {
        status = 0; // no answer: the server or the network is down for now
      } finally {
        probe.abort(); // a 200 is a stream of its own: let it go at once
      }
    }
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      throw new TransflowError(
        `the server refused the progress stream of ${this.channel} (${status}): ` +
          (status === 401 || status === 403 ? "the stream token is wrong or expired; ask the host for a new ticket" : "check the channel and the stream URL"),
        { code: "StreamRefused", status },
      );
    }
    if (this.reconnects > limit) {
      throw new TransflowError(`the progress stream of ${this.channel} failed ${this.reconnects} times; call follow() again later`, {
        code: "StreamClosed",
        status,
      });
    }
    const seconds = Number(retryAfter);
    const wait = status === 200 ? 0 : Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 * (1 + 0.5 * Math.random()) : backoffDelay(this.reconnects, { base: 1000, cap: 30_000 });
    await this.sleep(wait);
    if (this.closed || isFinished(this.status)) return;
    this.open(); // with ?lastEventId= set to the last event seen
  }

  fail(err) {
    if (this.options.onError) this.options.onError(err);
    this.settle.reject(err);
  }

  finishIfDone() {
    if (!isFinished(this.status)) return;
    this.close();
    try {
      if (this.storage) this.storage.removeItem(this.storeKey);
    } catch {
      // nothing to forget
    }
    this.settle.resolve(this.status);
  }
}

function safeJson(text) {
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}
