// Runs the dev page's app.js (argv[2]) under a minimal DOM with stand-ins for the browser's
// APIs; prints what the page showed as JSON. Driven by tests/unit/test_dev_page_script.py.
import { File as BufferFile } from "node:buffer";

globalThis.File ??= BufferFile; // global from Node 20 only
class Node {
  constructor(tag) {
    this.tag = tag; this.className = ""; this.textContent = ""; this.dataset = {};
    this.style = {}; this.children = []; this.listeners = {}; this.value = ""; this.hidden = false;
    this.parent = null;
  }
  append(...c) { c.forEach((n) => (n.parent = this)); this.children.push(...c); }
  prepend(...c) { c.forEach((n) => (n.parent = this)); this.children.unshift(...c); }
  replaceChildren(...c) { this.children = c; }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter((n) => n !== this); }
  addEventListener(name, fn) { this.listeners[name] = fn; }
}
const nodes = { uploads: new Node("div"), "upload-form": new Node("form"), message: new Node("div"),
                files: new Node("input"), template: new Node("select") };
nodes.files.files = [new File(["x".repeat(3000)], "a.wav", { type: "audio/wav" })];
nodes.template.value = "audio-normalise";
nodes.template.selectedOptions = [{ dataset: { accept: ".wav,audio/wav" } }];
const sources = [];
let refuse = false;
globalThis.alert = () => { throw new Error("alert() called"); };
globalThis.document = { getElementById: (id) => nodes[id], createElement: (t) => new Node(t) };
globalThis.localStorage = undefined;
globalThis.EventSource = class {
  constructor(url) { this.url = url; this.readyState = 1; sources.push(this); }
  addEventListener(n, fn) { this["on" + n] = fn; } close() { this.readyState = 2; }
};
globalThis.XMLHttpRequest = class {
  constructor() { this.upload = {}; }
  open() {} getResponseHeader() { return null; }
  send() { setTimeout(() => { this.upload.onprogress({ loaded: 3300, total: 3300 }); this.status = 204; this.onload(); }, 0); }
};
globalThis.fetch = async (url) => ({
  ok: !refuse, status: refuse ? 400 : 200,
  json: async () => (refuse ? { error: "UploadRefusedError", message: "a.wav: 3000 bytes is over the limit" }
    : url === "api/uploads"
      ? { uploadId: "u1", branch: "main", streamToken: "t",
          files: [{ method: "post", url: "http://s3", fields: {} }] }
      : { outputs: [{ key: "out/a.wav", bytes: 2048, url: "http://s3/out" }] }),
});
const app = await import(process.argv[2]);
const { foldStatus, initialStatus } = await import(process.argv[3]);
const out = {};
out.accept = [nodes.files.accept];
nodes.template.selectedOptions = [{ dataset: {} }];
nodes.template.listeners.change();
out.accept.push(nodes.files.accept);
nodes.template.selectedOptions = [{ dataset: { accept: ".wav,audio/wav" } }];
nodes.template.listeners.change();

const view = app.card([{ name: "a.wav", size: 12 * 1024 * 1024 }]);
const box = nodes.uploads.children[0];
const [head, , bytes, , bar, state] = box.children;
out.head = head.children[0].textContent;
view.bytes({ loaded: 5 * 1024 * 1024, acknowledged: 5 * 1024 * 1024, total: 12 * 1024 * 1024, sent: 5 * 1024 * 1024, resumed: 0 });
out.bytes = [bytes.textContent, box.dataset.bytesAcknowledged];
let s = initialStatus();
s = foldStatus(s, { type: "start", uploadId: "u1", seq: 1 });
s = foldStatus(s, { type: "progress", uploadId: "u1", seq: 2, percent: 40 });
s = foldStatus(s, { type: "error", uploadId: "u1", seq: 3, retrying: true, message: "disk full" });
view.show(s); out.retrying = [state.textContent, box.dataset.state];
s = foldStatus(s, { type: "start", uploadId: "u1", seq: 4 });
view.show(s); out.nextAttempt = state.textContent;
s = foldStatus(s, { type: "error", uploadId: "u1", seq: 5, message: "disk full" });
view.show(s); out.failed = [state.textContent, bar.children[0].style.width, box.className];
nodes.uploads.children = [];

const submitted = nodes["upload-form"].listeners.submit({ preventDefault() {} });
out.chooser = nodes.files.value;
const wait = (check) => new Promise((resolve) => {
  const poll = () => (check() ? resolve() : setTimeout(poll, 1));
  poll();
});
await wait(() => sources.length === 1 && nodes.uploads.children[0].dataset.uploaded === "true");
const card = nodes.uploads.children[0];
out.uploadedBytes = card.children[2].textContent;
sources[0].onsnapshot({ data: JSON.stringify({ state: "queued" }) });
sources[0].onmessage({ data: JSON.stringify({ type: "error", uploadId: "u1", seq: 1, message: "boom" }) });
await submitted;
out.errorTexts = [card.children[4].textContent, card.children[5].textContent]; // the abort button is gone
out.outputs = card.children[6].children.map((a) => a.textContent);

refuse = true;
const cardsBefore = nodes.uploads.children.length;
nodes.files.files = [new File(["x".repeat(3000)], "a.wav", { type: "audio/wav" })];
await nodes["upload-form"].listeners.submit({ preventDefault() {} });
out.refused = [nodes.message.textContent, nodes.message.hidden, nodes.uploads.children.length - cardsBefore];
console.log(JSON.stringify(out));
