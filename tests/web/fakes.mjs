// Stand-ins for the browser APIs the client uses (XMLHttpRequest, fetch, EventSource,
// localStorage), driven by a test's handler functions. Node has Blob and FormData; File is
// global from Node 20 and in node:buffer from 18.13 (Debian bookworm's nodejs is 18).
import { File as BufferFile } from "node:buffer";

globalThis.File ??= BufferFile;

export class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

export const MiB = 1024 * 1024;

/** A File of `size` bytes (zeros) named `name`. */
export function makeFile(name, size, lastModified = 1_700_000_000_000) {
  return new File([new Uint8Array(size)], name, { lastModified });
}

/** An XMLHttpRequest class whose answers come from `handle({method, url, body, size})`,
 * which returns {status, etag?, text?, progress?: [bytes...]} or {network: true} (no
 * answer), possibly after awaiting. Every request is recorded in `requests`. */
export function fakeXhr(handle) {
  const requests = [];
  class FakeXHR {
    constructor() {
      this.upload = {};
      this.status = 0;
      this.responseText = "";
      this.headers = {};
      this.aborted = false;
    }
    open(method, url) {
      this.method = method;
      this.url = url;
    }
    getResponseHeader(name) {
      return this.headers[name.toLowerCase()] ?? null;
    }
    abort() {
      if (this.aborted || this.finished) return;
      this.aborted = true;
      queueMicrotask(() => this.onabort && this.onabort());
    }
    send(body) {
      const size = body instanceof Blob ? body.size : bodySize(body);
      const request = { method: this.method, url: this.url, body, size, xhr: this };
      requests.push(request);
      (async () => {
        const answer = await handle(request);
        if (this.aborted) return;
        for (const loaded of answer.progress ?? [size]) {
          await new Promise((r) => setTimeout(r, 0));
          if (this.aborted) return;
          this.upload.onprogress && this.upload.onprogress({ loaded, total: size });
        }
        if (this.aborted) return;
        this.finished = true;
        if (answer.network) {
          this.onerror && this.onerror();
          return;
        }
        this.status = answer.status;
        this.responseText = answer.text ?? "";
        if (answer.etag) this.headers.etag = answer.etag;
        this.onload && this.onload();
      })();
    }
  }
  FakeXHR.requests = requests;
  return FakeXHR;
}

// A POST form counts its fields and boundaries too: 300 bytes more than the file here.
function bodySize(form) {
  let size = 300;
  for (const [, value] of form.entries()) size += value instanceof Blob ? value.size : String(value).length;
  return size;
}

/** fetch() answering JSON from `routes[path](body)` -> [status, data] (or data for 200). */
export function fakeFetch(routes) {
  const calls = [];
  async function fetch(url, init) {
    const body = init && init.body ? JSON.parse(init.body) : null;
    calls.push({ url, body, headers: (init && init.headers) || {} });
    const route = routes[url];
    if (!route) return answer(404, { error: "NotFound", message: `no route ${url}` });
    const result = await route(body);
    return Array.isArray(result) ? answer(result[0], result[1]) : answer(200, result);
  }
  fetch.calls = calls;
  return fetch;
}

function answer(status, data) {
  return { ok: status >= 200 && status < 300, status, json: async () => data };
}

/** An EventSource whose instances the test drives: emit("snapshot", data), message(data, id). */
export function fakeEventSource() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 1;
      this.listeners = {};
      this.closed = false;
      sources.push(this);
    }
    addEventListener(name, fn) {
      this.listeners[name] = fn;
    }
    close() {
      this.closed = true;
      this.readyState = 2;
    }
    emit(name, data) {
      this.listeners[name]({ data: JSON.stringify(data), lastEventId: "" });
    }
    message(data, id = "") {
      this.onmessage({ data: typeof data === "string" ? data : JSON.stringify(data), lastEventId: id });
    }
    fail(readyState) {
      this.readyState = readyState;
      this.onerror();
    }
  }
  FakeEventSource.sources = sources;
  return FakeEventSource;
}
