// transflow dev page, built on the browser client the package ships (transflow.js): no build
// step, no dependencies. Uploads resume after a refresh: choose the same files again.
import { follow, formatBytes, upload } from "./transflow.js";

const uploads = document.getElementById("uploads");
const chooser = document.getElementById("files");
const templates = document.getElementById("template");
const message = document.getElementById("message");
const WAITING = "uploaded; waiting for the bridge";

// The chooser offers only what the chosen template takes, when its option says (data-accept).
function restrictChooser() {
  const option = templates.selectedOptions ? templates.selectedOptions[0] : undefined;
  chooser.accept = (option && option.dataset.accept) || "";
}
templates.addEventListener("change", restrictChooser);
restrictChooser();

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Errors go on the page, not into alert(): the page stays usable. */
export function say(text) {
  message.textContent = text;
  message.hidden = !text;
}

export function card(files) {
  const box = el("div", "upload queued");
  const head = el("div", "head");
  const total = files.reduce((sum, f) => sum + f.size, 0);
  head.append(el("span", "name", `${files.length} file(s), ${formatBytes(total)}: ${files.map((f) => `${f.name} (${formatBytes(f.size)})`).join(", ")}`));
  const id = el("span", "id", "");
  head.append(id);
  const sending = el("div", "bar sending");
  const sent = el("div", "fill");
  sending.append(sent);
  const bytes = el("div", "bytes", `0 B of ${formatBytes(total)} uploaded`);
  const bar = el("div", "bar");
  const fill = el("div", "fill");
  bar.append(fill);
  const state = el("div", "state", "uploading");
  const log = el("div", "log");
  const outputs = el("div", "outputs");
  const abort = el("button", "abort", "abort upload");
  abort.type = "button";
  box.append(head, sending, bytes, abort, bar, state, log, outputs);
  uploads.prepend(box);
  box.dataset.bytesTotal = String(total);
  return {
    box,
    abortButton: abort,
    ticket(ticket, resumed) {
      box.dataset.uploadId = ticket.uploadId;
      id.textContent = ticket.uploadId;
      box.dataset.method = ticket.files.map((f) => f.method || "post").join(",");
      if (resumed) log.textContent = "resuming: only what S3 lacks is sent";
    },
    bytes(progress) {
      const acknowledged = progress.acknowledged;
      sent.style.width = `${progress.total ? (100 * progress.loaded) / progress.total : 100}%`;
      bytes.textContent =
        `${formatBytes(progress.loaded)} of ${formatBytes(progress.total)} uploaded` +
        (progress.resumed ? ` (${formatBytes(progress.resumed)} already there)` : "");
      box.dataset.bytesLoaded = String(progress.loaded);
      box.dataset.bytesAcknowledged = String(acknowledged);
      box.dataset.bytesSent = String(progress.sent);
      box.dataset.bytesResumed = String(progress.resumed);
    },
    show(status) {
      const percent = status.state === "completed" ? 100 : Math.round(status.percent || 0);
      // A failed upload gets a full red bar: a red sliver at 0% would read as grey.
      fill.style.width = status.state === "error" ? "100%" : `${percent}%`;
      box.className = `upload ${status.state}`;
      box.dataset.state = status.state;
      box.dataset.percent = String(percent);
      // The bridge has the upload once anything happened: the waiting note is stale.
      if (status.state !== "queued" && log.textContent === WAITING) log.textContent = "";
      const failing = status.state === "error" || status.state === "retrying" || status.state === "cancelled";
      state.textContent = status.state === "error" ? "failed" : `${status.state} ${percent}%`;
      if (failing && status.error) state.textContent += ` — ${status.error}`;
    },
    note(text) { log.textContent = text; },
    uploaded() {
      box.dataset.uploaded = "true";
      abort.remove();
      if ((box.dataset.state || "queued") === "queued") log.textContent = WAITING;
    },
    failed(text) {
      abort.remove();
      box.className = "upload error";
      box.dataset.state = "upload-failed";
      box.dataset.uploadError = text;
      state.textContent = `upload failed — ${text}`;
      log.textContent = "";
    },
    async links(uploadId) {
      const report = await (await fetch(`api/uploads/${encodeURIComponent(uploadId)}`)).json();
      outputs.replaceChildren(...report.outputs.map((o) => {
        const a = el("a", "output", `${o.key} (${formatBytes(o.bytes)})`);
        a.href = o.url;
        return a;
      }));
      box.dataset.outputs = String(report.outputs.length);
    },
  };
}

function watch(ticket, view) {
  return follow(ticket, ticket.streamToken, {
    url: "events",
    onStatus: (status, cause) => {
      // An error's message is on the state line already.
      if (cause && cause.message && cause.type && cause.type !== "error") view.note(cause.message);
      view.show(status);
    },
  });
}

document.getElementById("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = Array.from(chooser.files);
  if (!files.length) return;
  chooser.value = ""; // ready for the next upload; the card lists these files
  say("");
  const view = card(files);
  let following = null;
  const task = upload(files, {
    ticketUrl: "api/uploads",
    multipartUrl: "api/multipart",
    body: { templateId: templates.value },
    onTicket: (ticket, { resumed }) => {
      view.ticket(ticket, resumed);
      following = watch(ticket, view); // subscribe before the bytes go: nothing is missed
    },
    onProgress: (progress) => view.bytes(progress),
  });
  view.abortButton.addEventListener("click", () => {
    task.abort().catch((err) => say(`could not abort: ${err.message}`));
  });
  try {
    const result = await task.done;
    view.bytes(result);
    view.uploaded();
  } catch (err) {
    if (following) following.close(); // no job comes of an upload that did not finish
    if (following) view.failed(err.message);
    else {
      view.box.remove(); // no ticket: nothing to show but the reason
      say(err.message);
    }
    return;
  }
  try {
    await following.done;
    await view.links(following.status.uploadId || view.box.dataset.uploadId);
  } catch (err) {
    view.note(err.message);
  }
});

// Tests (and anything that rewrites the page) wait for this: the listeners above are set.
if (document.documentElement && document.documentElement.dataset) {
  document.documentElement.dataset.devPage = "ready";
}
