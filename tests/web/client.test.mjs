// The browser client's pure parts and its upload/follow flows against stand-ins for the
// browser's APIs (tests/web/fakes.mjs). Run by tests/unit/test_web_client.py: node --test.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ByteProgress,
  PartUrls,
  ResumeStore,
  TransflowError,
  UploadStoppedError,
  URL_MARGIN_MS,
  applySnapshot,
  backoffDelay,
  eventKind,
  foldStatus,
  follow,
  formatBytes,
  initialStatus,
  parseEvent,
  planParts,
  resumeKey,
  streamQuery,
  upload,
  withRetry,
} from "../../src/transflow/web/static/transflow.js";
import { MemoryStorage, MiB, fakeEventSource, fakeFetch, fakeXhr, makeFile } from "./fakes.mjs";

const noSleep = async () => {};

// -- pure parts -------------------------------------------------------------------------------

test("parts cover the file exactly, the last one short", () => {
  const parts = planParts(12 * MiB, 5 * MiB, 3);
  assert.deepEqual(
    parts.map((p) => [p.partNumber, p.start, p.end]),
    [[1, 0, 5 * MiB], [2, 5 * MiB, 10 * MiB], [3, 10 * MiB, 12 * MiB]],
  );
  assert.equal(planParts(10 * MiB, 5 * MiB).length, 2);
  assert.equal(planParts(0, 5 * MiB).length, 1);
});

test("a part count that does not match the file is refused, as are 10,001 parts", () => {
  assert.throws(() => planParts(12 * MiB, 5 * MiB, 2), /makes 3: the file is not the one/);
  assert.throws(() => planParts(10_001, 1), /over S3's 10000/);
  assert.throws(() => planParts(-1, 5), TransflowError);
  assert.throws(() => planParts(10, 0), /part size 0/);
});

test("sizes read as people write them", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(12 * MiB), "12.0 MiB");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(5 * 1024 * MiB), "5.0 GiB");
  assert.equal(formatBytes(Number.NaN), "?");
});

test("backoff is full jitter under a cap", () => {
  assert.equal(backoffDelay(0, { base: 500, random: () => 0 }), 0);
  assert.equal(backoffDelay(0, { base: 500, random: () => 0.5 }), 250);
  assert.equal(backoffDelay(3, { base: 500, random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(30, { base: 500, cap: 20_000, random: () => 0.999999 }), 19_999);
});

test("withRetry retries what may succeed, with growing waits, and stops at once otherwise", async () => {
  const waits = [];
  let calls = 0;
  const result = await withRetry(
    async () => {
      calls += 1;
      if (calls < 3) throw new TransflowError("503", { status: 503, retryable: true });
      return "ok";
    },
    { retries: 5, base: 100, random: () => 1, sleep: async (ms) => waits.push(ms) },
  );
  assert.equal(result, "ok");
  assert.deepEqual(waits, [100, 200]);

  calls = 0;
  await assert.rejects(
    withRetry(async () => {
      calls += 1;
      throw new TransflowError("bad", { status: 400 });
    }, { sleep: noSleep }),
    /bad/,
  );
  assert.equal(calls, 1);

  calls = 0;
  await assert.rejects(
    withRetry(async () => {
      calls += 1;
      throw new TransflowError("down", { retryable: true });
    }, { retries: 2, sleep: noSleep }),
    /down/,
  );
  assert.equal(calls, 3);

  const stop = new UploadStoppedError("paused");
  await assert.rejects(
    withRetry(async () => {
      throw new TransflowError("down", { retryable: true });
    }, { sleep: noSleep, stopped: () => stop }),
    (err) => err === stop,
  );
});

test("a retried part counts once in loaded and acknowledged, twice in sent", () => {
  const progress = new ByteProgress([12, 3]);
  progress.sending(0, 1, 4);
  progress.sending(0, 1, 5);
  assert.deepEqual(progress.file(0), { size: 12, acknowledged: 0, loaded: 5 });
  progress.failed(0, 1); // the connection dropped: those bytes must be sent again
  assert.deepEqual(progress.file(0), { size: 12, acknowledged: 0, loaded: 0 });
  progress.sending(0, 1, 5);
  assert.equal(progress.acknowledge(0, 1, 5), true);
  assert.equal(progress.acknowledge(0, 1, 5), false); // a second answer for the part
  progress.sending(0, 1, 5); // a late progress event of an acknowledged part
  progress.acknowledge(0, 2, 7, { resumed: true });
  assert.deepEqual(progress.file(0), { size: 12, acknowledged: 12, loaded: 12 });
  assert.deepEqual(progress.totals(), { acknowledged: 12, loaded: 12, total: 15, sent: 10, resumed: 7 });
});

test("a resume record is kept until the ticket cannot be used any more", () => {
  const storage = new MemoryStorage();
  const files = [{ name: "a.mov", size: 10, lastModified: 7 }];
  const key = resumeKey(files);
  assert.equal(key, "transflow:upload:a.mov:10:7");
  const ticket = {
    uploadId: "u1",
    expiresAt: "2026-01-01T01:00:00Z",
    streamTokenExpiresAt: "2026-01-01T03:00:00Z",
    files: [{ method: "multipart", key: "k" }],
  };
  const store = new ResumeStore(storage, key);
  store.start(ticket);
  store.part(0, 1, '"e1"', 5);
  const at = (iso) => Date.parse(iso);
  // Multipart parts are signed on demand: the POST expiry does not matter, the token's does.
  assert.deepEqual(new ResumeStore(storage, key).load(at("2026-01-01T02:00:00Z")).parts, { 0: { 1: { etag: '"e1"', size: 5 } } });
  assert.equal(new ResumeStore(storage, key).load(at("2026-01-01T04:00:00Z")), null);
  assert.equal(storage.getItem(key), null); // forgotten, not tried again
  storage.setItem(key, "{not json");
  assert.equal(new ResumeStore(storage, key).load(), null);
  assert.equal(new ResumeStore(null, key).load(), null); // storage disabled: no resume, no crash
});

test("part URLs are signed a few at a time, once, and again when close to expiry or refused", async () => {
  let now = 0;
  const asked = [];
  const urls = new PartUrls(
    async (numbers) => {
      asked.push(numbers);
      return { parts: numbers.map((n) => ({ partNumber: n, url: `u${n}@${asked.length}` })), expiresAt: new Date(now + 5 * 60_000).toISOString() };
    },
    { batch: 3, now: () => now },
  );
  const first = await Promise.all([urls.get(1, [2, 3, 4, 5]), urls.get(2, [3, 4, 5])]);
  assert.deepEqual(first, ["u1@1", "u2@1"]);
  assert.deepEqual(asked, [[1, 2, 3]]); // the second get waited for the first call
  assert.equal(await urls.get(4, [5]), "u4@2");
  urls.forget(3);
  assert.equal(await urls.get(3, []), "u3@3");
  now += 5 * 60_000 - URL_MARGIN_MS + 1; // part 5's URL would expire within the margin
  assert.equal(await urls.get(5, []), "u5@4");
  assert.deepEqual(asked, [[1, 2, 3], [4, 5], [3], [5]]);
  const stingy = new PartUrls(async () => ({ parts: [], expiresAt: new Date().toISOString() }));
  await assert.rejects(stingy.get(1), /signed no usable URL for part 1/);
});

test("events fold like the server's snapshot; terminal states stick", () => {
  let s = applySnapshot(initialStatus(), { state: "processing", percent: 20, lastEventId: "u:3", lastSeq: 3, steps: [{ name: "a", state: "running" }] });
  assert.equal(s.state, "processing");
  s = foldStatus(s, { type: "progress", uploadId: "u", seq: 4, step: "a", percent: 50 });
  assert.equal(s.percent, 50);
  assert.equal(s.lastEventId, "u:4");
  s = foldStatus(s, { type: "error", uploadId: "u", seq: 5, retrying: true, message: "disk full" });
  assert.deepEqual([s.state, s.error], ["retrying", "disk full"]);
  s = foldStatus(s, { type: "start", uploadId: "u", seq: 6 });
  assert.deepEqual([s.state, s.percent, s.error], ["processing", 0, undefined]);
  s = foldStatus(s, { type: "output", uploadId: "u", seq: 7, key: "out/a", step: "a" });
  s = foldStatus(s, { type: "output", uploadId: "u", seq: 7, key: "out/a", step: "a" });
  assert.equal(s.outputs.length, 1);
  s = foldStatus(s, { type: "step:done", uploadId: "u", seq: 8, step: "a" });
  assert.deepEqual(s.steps, [{ name: "a", state: "done", percent: 100 }]);
  s = foldStatus(s, { type: "done", uploadId: "u", seq: 9 });
  assert.deepEqual([s.state, s.percent], ["completed", 100]);
  s = foldStatus(s, { type: "progress", uploadId: "u", seq: 4, percent: 10 }); // a late copy
  assert.deepEqual([s.state, s.percent], ["completed", 100]);
  s = foldStatus(s, { type: "start", uploadId: "u", seq: 12 }); // redriven: a new run
  assert.equal(s.state, "processing");
  s = foldStatus(s, { type: "cancelled", uploadId: "u", seq: 13 });
  assert.equal(s.state, "cancelled");
  assert.equal(eventKind({ type: "canceled" }), "cancelled");
  assert.equal(eventKind({ type: "step:start" }), "step");
  assert.equal(eventKind({ type: "error", retrying: true }), "retrying");
  assert.equal(parseEvent("nope"), null);
  assert.equal(parseEvent('{"no":"type"}'), null);
  assert.deepEqual(parseEvent('{"type":"done"}'), { type: "done" });
});

test("the stream query names the channel, the token and the last event", () => {
  assert.equal(streamQuery("u1", "t").query, "channel=upload%3Amain%3Au1&token=t");
  assert.equal(streamQuery("u1", null, { branch: "dev" }).channel, "upload:dev:u1");
  assert.equal(streamQuery("upload:x:u2", "t", { lastEventId: "u2:7" }).query, "channel=upload%3Ax%3Au2&token=t&lastEventId=u2%3A7");
  assert.equal(streamQuery({ uploadId: "u3", branch: "b", streamToken: "s" }).query, "channel=upload%3Ab%3Au3&token=s");
});

// -- upload -----------------------------------------------------------------------------------

const PART = 5 * MiB;

/** A host and S3 in miniature: a ticket endpoint, the four multipart endpoints, part PUTs. */
function fakeHost({ size = 12 * MiB, putAnswer } = {}) {
  const parts = new Map(); // partNumber -> {etag, size}
  const state = { tickets: 0, completed: null, aborted: false, signed: [] };
  const ticket = () => ({
    uploadId: "up1",
    bucket: "b",
    branch: "main",
    prefix: "uploads/main/up1/",
    templateId: "t",
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    streamToken: "tok",
    streamTokenExpiresAt: new Date(Date.now() + 7_200_000).toISOString(),
    files: [{ method: "multipart", name: "big.mov", key: "uploads/main/up1/big.mov", multipartUploadId: "mp1", partSize: PART, partCount: Math.ceil(size / PART), size }],
  });
  const fetch = fakeFetch({
    "/api/uploads": async () => {
      state.tickets += 1;
      return ticket();
    },
    "/api/multipart/sign-parts": async (body) => {
      if (state.aborted) return [404, { error: "MultipartNotFoundError", message: "gone" }];
      state.signed.push(body.partNumbers);
      return { parts: body.partNumbers.map((n) => ({ partNumber: n, url: `https://s3/part?n=${n}` })), expiresAt: new Date(Date.now() + 600_000).toISOString() };
    },
    "/api/multipart/list-parts": async () => {
      if (state.aborted) return [404, { error: "MultipartNotFoundError", message: "gone" }];
      return { parts: [...parts].map(([partNumber, p]) => ({ partNumber, ...p })) };
    },
    "/api/multipart/complete": async (body) => {
      state.completed = body.parts;
      return { key: "uploads/main/up1/big.mov", size: [...parts.values()].reduce((a, p) => a + p.size, 0), etag: '"final"' };
    },
    "/api/multipart/abort": async () => {
      state.aborted = true;
      return { aborted: true };
    },
  });
  const XHR = fakeXhr(async (request) => {
    const n = Number(new URL(request.url).searchParams.get("n"));
    const custom = putAnswer && (await putAnswer(n, request));
    if (custom) return custom;
    parts.set(n, { etag: `"e${n}"`, size: request.size });
    return { status: 200, etag: `"e${n}"`, progress: [Math.floor(request.size / 2), request.size] };
  });
  return { fetch, XHR, parts, state };
}

const options = (host, extra = {}) => ({
  ticketUrl: "/api/uploads",
  multipartUrl: "/api/multipart",
  body: { templateId: "t" },
  fetch: host.fetch,
  XMLHttpRequest: host.XHR,
  sleep: noSleep,
  ...extra,
});

test("a big file goes up in parallel parts with exact byte progress; a failed part is sent again", async () => {
  let failures = 0;
  const host = fakeHost({
    putAnswer: async (n, request) => {
      if (n === 2 && failures === 0) {
        failures += 1;
        return { network: true, progress: [request.size / 5] }; // a fifth out, then the drop
      }
      return null;
    },
  });
  const storage = new MemoryStorage();
  const seen = [];
  const file = makeFile("big.mov", 12 * MiB);
  const task = upload([file], options(host, { storage, onProgress: (p) => seen.push(p) }));
  const result = await task.done;
  assert.equal(result.acknowledged, 12 * MiB);
  assert.equal(result.sent, 12 * MiB + PART / 5); // the dropped fifth, and nothing else twice
  assert.deepEqual(host.state.completed, [1, 2, 3].map((n) => ({ partNumber: n, etag: `"e${n}"` })));
  assert.deepEqual(host.state.signed, [[1, 2, 3]]); // in one call; the retry reuses its URL
  let acknowledged = 0;
  for (const p of seen) {
    assert.ok(p.loaded <= p.total && p.files[0].loaded <= file.size);
    assert.ok(p.acknowledged >= acknowledged, "acknowledged bytes never go back");
    acknowledged = p.acknowledged;
  }
  const last = seen.at(-1);
  assert.deepEqual([last.loaded, last.acknowledged, last.total, last.files[0].done], [12 * MiB, 12 * MiB, 12 * MiB, true]);
  assert.equal(storage.items.size, 0); // done: nothing left to resume
  const auth = host.fetch.calls.filter((c) => c.url.startsWith("/api/multipart/")).map((c) => c.headers.Authorization);
  assert.ok(auth.length > 0 && auth.every((a) => a === "Bearer tok"));
});

test("after a refresh the same files resume: only the parts S3 lacks are sent", async () => {
  const host = fakeHost();
  const storage = new MemoryStorage();
  const file = makeFile("big.mov", 12 * MiB);
  const first = upload([file], options(host, {
    storage,
    parallel: 1,
    onProgress: (p) => p.acknowledged >= PART && first.pause(), // the page goes away here
  }));
  await assert.rejects(first.done, (err) => err instanceof UploadStoppedError && err.code === "paused");
  assert.deepEqual([...host.parts.keys()], [1]);
  assert.equal(storage.items.size, 1);

  const putsBefore = host.XHR.requests.length;
  const again = upload([makeFile("big.mov", 12 * MiB)], options(host, { storage, parallel: 1 }));
  const result = await again.done;
  assert.equal(host.state.tickets, 1); // the saved ticket, not a new upload
  assert.equal(result.resumedUpload, true);
  assert.equal(result.resumed, PART);
  assert.equal(result.sent, 7 * MiB); // parts 2 and 3 only
  assert.equal(result.acknowledged, 12 * MiB);
  assert.deepEqual(host.XHR.requests.slice(putsBefore).map((r) => new URL(r.url).searchParams.get("n")), ["2", "3"]);
  assert.deepEqual(host.state.completed.map((p) => p.partNumber), [1, 2, 3]);
  assert.equal(storage.items.size, 0);
});

test("a resume whose multipart upload is gone starts a new upload", async () => {
  const host = fakeHost();
  const storage = new MemoryStorage();
  const file = makeFile("big.mov", 12 * MiB);
  const first = upload([file], options(host, { storage, parallel: 1, onProgress: (p) => p.acknowledged >= PART && first.pause() }));
  await assert.rejects(first.done, UploadStoppedError);
  host.state.aborted = true; // the bucket's lifecycle rule aborted it meanwhile
  const again = upload([file], options(host, { storage }));
  host.state.aborted = false;
  await again.ticket;
  const result = await again.done;
  assert.equal(host.state.tickets, 2);
  assert.equal(result.resumedUpload, false);
});

test("abort() aborts the multipart upload and forgets it", async () => {
  const host = fakeHost();
  const storage = new MemoryStorage();
  const task = upload([makeFile("big.mov", 12 * MiB)], options(host, { storage, parallel: 1, onProgress: (p) => p.acknowledged >= PART && task.abort() }));
  await assert.rejects(task.done, (err) => err instanceof UploadStoppedError && err.code === "aborted");
  await new Promise((r) => setTimeout(r, 0)); // abort()'s own call, started in onProgress
  assert.equal(host.state.aborted, true);
  assert.equal(storage.items.size, 0);
});

test("a refused part fails its file with S3's reason, and the upload says which file", async () => {
  const host = fakeHost({ putAnswer: async (n) => (n === 3 ? { status: 400, text: "<Error><Code>EntityTooLarge</Code></Error>" } : null) });
  const task = upload([makeFile("big.mov", 12 * MiB)], options(host, { storage: new MemoryStorage() }));
  await assert.rejects(task.done, (err) => err.name === "UploadFailedError" && /big.mov: S3 refused part 3 of big.mov: 400 EntityTooLarge/.test(err.message));
  assert.equal(host.state.completed, null);
});

test("a 403 on a part signs its URL again and sends it", async () => {
  let refusedOnce = false;
  const host = fakeHost({ putAnswer: async (n) => (n === 1 && !refusedOnce ? ((refusedOnce = true), { status: 403 }) : null) });
  const result = await upload([makeFile("big.mov", 12 * MiB)], options(host, { storage: null })).done;
  assert.equal(result.acknowledged, 12 * MiB);
  assert.equal(host.state.signed.flat().filter((n) => n === 1).length, 2);
});

test("a part answered without a readable ETag says to fix the bucket's CORS", async () => {
  const host = fakeHost({ putAnswer: async () => ({ status: 200 }) });
  await assert.rejects(upload([makeFile("big.mov", 12 * MiB)], options(host, { storage: null })).done, /must expose ETag/);
});

test("a small file goes by presigned POST; its progress counts the file's bytes, not the form's", async () => {
  const fetch = fakeFetch({
    "/api/uploads": async (body) => {
      assert.deepEqual(body, { templateId: "t", files: [{ name: "a.txt", type: "text/plain", size: 1000 }] });
      return { uploadId: "u", branch: "main", expiresAt: new Date(Date.now() + 60_000).toISOString(), files: [{ method: "post", key: "k", url: "https://s3/", fields: { key: "k", policy: "p" } }] };
    },
  });
  const XHR = fakeXhr(async (request) => {
    const fields = [...request.body.keys()];
    assert.deepEqual(fields, ["key", "policy", "file"]); // the file last
    return { status: 204, progress: [150, request.size - 10, request.size] };
  });
  const seen = [];
  const file = new File(["x".repeat(1000)], "a.txt", { type: "text/plain" });
  const result = await upload([file], { ticketUrl: "/api/uploads", body: { templateId: "t" }, fetch, XMLHttpRequest: XHR, storage: null, onProgress: (p) => seen.push(p.loaded) }).done;
  assert.equal(result.acknowledged, 1000);
  assert.deepEqual(result.files.map((f) => f.method), ["post"]);
  assert.ok(seen.every((n) => n >= 0 && n <= 1000));
  assert.equal(seen.at(-1), 1000);
});

test("a ticket endpoint's error is reported with its message", async () => {
  const fetch = fakeFetch({ "/api/uploads": async () => [400, { error: "UploadRefusedError", message: "a.exe: content type not allowed" }] });
  await assert.rejects(
    upload([new File(["x"], "a.exe")], { ticketUrl: "/api/uploads", fetch, storage: null }).done,
    (err) => err.code === "UploadRefusedError" && err.status === 400 && /content type not allowed/.test(err.message),
  );
});

// -- follow -----------------------------------------------------------------------------------

test("follow: snapshot first, typed events, done closes the stream; a refresh resumes from the last id", async () => {
  const ES = fakeEventSource();
  const storage = new MemoryStorage();
  const kinds = [];
  const ticket = { uploadId: "u1", branch: "main", streamToken: "tok" };
  const first = follow(ticket, null, { url: "/events", EventSource: ES, storage }).on("*", (e) => kinds.push(e.type ?? "snapshot"));
  const source = ES.sources[0];
  assert.equal(source.url, "/events?channel=upload%3Amain%3Au1&token=tok");
  source.emit("snapshot", { channel: "upload:main:u1", state: "queued" });
  source.message({ type: "start", uploadId: "u1", seq: 1 }, "u1:1");
  source.message({ type: "progress", uploadId: "u1", seq: 2, percent: 40 }, "u1:2");
  source.message("not json");
  assert.equal(first.status.percent, 40);
  first.close(); // the page is refreshed

  const steps = [];
  const again = follow(ticket, null, { url: "/events", EventSource: ES, storage }).on("step", (e) => steps.push(e.step));
  const resumed = ES.sources[1];
  assert.match(resumed.url, /&lastEventId=u1%3A2$/);
  resumed.emit("snapshot", { channel: "upload:main:u1", state: "processing", percent: 40, lastEventId: "u1:2", lastSeq: 2 });
  resumed.message({ type: "step:start", uploadId: "u1", seq: 3, step: "transcode" }, "u1:3");
  resumed.message({ type: "done", uploadId: "u1", seq: 4 }, "u1:4");
  const status = await again.done;
  assert.equal(status.state, "completed");
  assert.equal(resumed.closed, true);
  assert.deepEqual(steps, ["transcode"]);
  assert.deepEqual(kinds, ["snapshot", "start", "progress"]);
  assert.equal(storage.items.size, 0); // finished: nothing to resume
});

test("follow: a finished snapshot ends at once; a refused stream rejects; a reconnect does not", async () => {
  const ES = fakeEventSource();
  const done = follow("u9", "tok", { EventSource: ES, storage: null });
  ES.sources[0].emit("snapshot", { state: "error", error: "boom" });
  assert.deepEqual(await done.done, { ...initialStatus(), state: "error", error: "boom" });

  const probes = [];
  const answering = (status, headers = {}) => async (url) => {
    probes.push(url);
    return { status, headers: new Headers(headers) };
  };
  const refused = follow("upload:main:u8", "bad", { EventSource: ES, storage: null, fetch: answering(401) });
  ES.sources[1].fail(0); // CONNECTING: the browser retries by itself
  assert.equal(probes.length, 0);
  ES.sources[1].fail(2); // CLOSED: the client asks what the answer was
  await assert.rejects(refused.done, (err) => err.code === "StreamRefused" && err.status === 401 && /token is wrong or expired/.test(err.message));
  assert.equal(ES.sources.length, 2); // no new stream for a refused token
});

test("follow: a full server's 503 is waited out and the stream resumes after the last event", async () => {
  const ES = fakeEventSource();
  const waits = [];
  const busy = async () => ({ status: 503, headers: new Headers({ "Retry-After": "15" }) });
  const following = follow("u5", "tok", { EventSource: ES, storage: null, fetch: busy, sleep: async (ms) => waits.push(ms) });
  const first = ES.sources[0];
  first.emit("snapshot", { state: "processing", lastEventId: "u5:3", lastSeq: 3 });
  first.message({ type: "progress", uploadId: "u5", seq: 4, percent: 50 }, "u5:4");
  first.fail(2); // the server went away and answered 503 when the browser came back
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(ES.sources.length, 2);
  assert.ok(waits[0] >= 15_000 && waits[0] <= 22_500, `waited ${waits[0]} ms`);
  assert.match(ES.sources[1].url, /&lastEventId=u5%3A4$/);
  ES.sources[1].message({ type: "done", uploadId: "u5", seq: 5 }, "u5:5");
  assert.equal((await following.done).state, "completed");

  const down = follow("u6", "tok", { EventSource: ES, storage: null, maxReconnects: 1, sleep: async () => {}, fetch: async () => { throw new Error("down"); } });
  ES.sources[2].fail(2);
  await new Promise((r) => setTimeout(r, 0));
  ES.sources[3].fail(2);
  await assert.rejects(down.done, (err) => err.code === "StreamClosed" && /failed 2 times/.test(err.message));
});

test("an upload of a big and a small file: multipart and POST side by side, never more than `parallel` transfers", async () => {
  const host = fakeHost();
  const small = new File(["y".repeat(4096)], "notes.txt", { type: "text/plain" });
  const big = makeFile("big.mov", 12 * MiB);
  const fetch = fakeFetch({
    "/api/uploads": async () => ({
      uploadId: "up1",
      branch: "main",
      expiresAt: new Date(Date.now() + 60_000).toISOString(),
      streamToken: "tok",
      files: [
        { method: "multipart", name: "big.mov", key: "uploads/main/up1/big.mov", multipartUploadId: "mp1", partSize: PART, partCount: 3, size: 12 * MiB },
        { method: "post", name: "notes.txt", key: "uploads/main/up1/notes.txt", url: "https://s3/post", fields: { key: "uploads/main/up1/notes.txt" } },
      ],
    }),
  });
  const multipart = (url, init) => (url.startsWith("/api/multipart/") ? host.fetch(url, init) : fetch(url, init));
  let open = 0;
  let most = 0;
  const XHR = fakeXhr(async (request) => {
    open += 1;
    most = Math.max(most, open);
    await new Promise((r) => setTimeout(r, 2));
    open -= 1;
    if (request.method === "POST") return { status: 204 };
    const n = Number(new URL(request.url).searchParams.get("n"));
    host.parts.set(n, { etag: `"e${n}"`, size: request.size });
    return { status: 200, etag: `"e${n}"` };
  });
  const result = await upload([big, small], { ticketUrl: "/api/uploads", multipartUrl: "/api/multipart", fetch: multipart, XMLHttpRequest: XHR, storage: null, parallel: 2, sleep: noSleep }).done;
  assert.deepEqual(result.files.map((f) => [f.name, f.method]), [["big.mov", "multipart"], ["notes.txt", "post"]]);
  assert.equal(result.acknowledged, 12 * MiB + 4096);
  assert.equal(result.total, 12 * MiB + 4096);
  assert.equal(most, 2);
  assert.deepEqual(host.state.completed.map((p) => p.partNumber), [1, 2, 3]);
});
