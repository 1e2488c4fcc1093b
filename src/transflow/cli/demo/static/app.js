// transflow dev page: no build step, no dependencies.
"use strict";

const uploads = document.getElementById("uploads");
const chooser = document.getElementById("files");
const templates = document.getElementById("template");
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

function card(ticket, files) {
  const box = el("div", "upload queued");
  box.dataset.uploadId = ticket.uploadId;
  const head = el("div", "head");
  head.append(el("span", "name", `${files.length} file(s): ${files.map((f) => f.name).join(", ")}`));
  head.append(el("span", "id", ticket.uploadId));
  const bar = el("div", "bar");
  const fill = el("div", "fill");
  bar.append(fill);
  const state = el("div", "state", "uploading");
  const log = el("div", "log");
  const outputs = el("div", "outputs");
  box.append(head, bar, state, log, outputs);
  uploads.prepend(box);
  return {
    box,
    show(status) {
      const percent = status.state === "completed" ? 100 : Math.round(status.percent || 0);
      // A failed upload gets a full red bar: a red sliver at 0% would read as grey.
      fill.style.width = status.state === "error" ? "100%" : `${percent}%`;
      box.className = `upload ${status.state}`;
      box.dataset.state = status.state;
      box.dataset.percent = String(percent);
      // The bridge has the upload once anything happened: the waiting note is stale.
      if (status.state !== "queued" && log.textContent === WAITING) log.textContent = "";
      const failing = status.state === "error" || status.state === "retrying";
      state.textContent = status.state === "error" ? "failed" : `${status.state} ${percent}%`;
      if (failing && status.error) state.textContent += ` — ${status.error}`;
    },
    note(text) { log.textContent = text; },
    uploaded() { if ((box.dataset.state || "queued") === "queued") log.textContent = WAITING; },
    async links() {
      const report = await (await fetch(`api/uploads/${encodeURIComponent(ticket.uploadId)}`)).json();
      outputs.replaceChildren(...report.outputs.map((o) => {
        const a = el("a", "output", `${o.key} (${o.bytes} bytes)`);
        a.href = o.url;
        return a;
      }));
      box.dataset.outputs = String(report.outputs.length);
    },
  };
}

function fold(status, event) {
  // The same folding as transflow.snapshot, for the events that move the bar.
  let next = { ...status };
  let finished = status.state === "completed" || status.state === "error";
  if (event.type === "start" && finished && event.seq > (status.lastSeq ?? Infinity)) {
    next = { state: "processing", percent: 0 };  // a new run (redriven): not a late copy
    finished = false;
  }
  if (event.seq !== undefined) next.lastSeq = event.seq;
  if (event.type === "start" && !finished) {
    // A new attempt: the last one's error and progress are history.
    next.state = "processing";
    next.percent = 0;
    delete next.error;
  }
  if (event.type === "progress" && event.percent !== undefined && !finished) next.percent = event.percent;
  if (["step:start", "progress", "output"].includes(event.type) && status.state === "queued") next.state = "processing";
  if (event.type === "done") { next.state = "completed"; next.percent = 100; }
  if (event.type === "error") {
    if (event.retrying === true && !finished) { next.state = "retrying"; next.error = event.message; }
    else { next.state = "error"; next.error = event.message || "processing failed"; }
  }
  return next;
}

function follow(ticket, view) {
  const channel = `upload:${ticket.branch}:${ticket.uploadId}`;
  // EventSource cannot send headers: the ticket's stream token goes in the query.
  const query = `channel=${encodeURIComponent(channel)}&token=${encodeURIComponent(ticket.streamToken)}`;
  const source = new EventSource(`events?${query}`);
  let status = { state: "queued", percent: 0 };
  return new Promise((resolve) => {
    const settle = () => {
      if (status.state === "completed" || status.state === "error") {
        source.close();
        view.links().finally(resolve);
      }
    };
    source.addEventListener("snapshot", (e) => {
      const snap = JSON.parse(e.data);
      if (snap.state !== "queued") status = { ...status, ...snap };
      view.show(status);
      settle();
    });
    source.onmessage = (e) => {
      const event = JSON.parse(e.data);
      status = fold(status, event);
      // An error's message is on the state line already.
      if (event.message && event.type !== "error") view.note(event.message);
      view.show(status);
      settle();
    };
    // EventSource reconnects by itself, sending Last-Event-ID.
  });
}

async function postFile(target, file) {
  const form = new FormData();
  for (const [name, value] of Object.entries(target.fields)) form.append(name, value);
  form.append("file", file);  // last: S3 ignores fields after the file
  const response = await fetch(target.url, { method: "POST", body: form });
  if (!response.ok) throw new Error(`S3 refused ${file.name}: ${response.status}`);
}

document.getElementById("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = Array.from(chooser.files);
  if (!files.length) return;
  chooser.value = "";  // ready for the next upload; the card lists these files
  const templateId = templates.value;
  const response = await fetch("api/uploads", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ templateId, files: files.map((f) => ({ name: f.name, type: f.type, size: f.size })) }),
  });
  const ticket = await response.json();
  if (!response.ok) { alert(ticket.error); return; }
  const view = card(ticket, files);
  const done = follow(ticket, view);  // subscribe first: nothing is missed
  try {
    await Promise.all(ticket.files.map((target, i) => postFile(target, files[i])));
    view.uploaded();
  } catch (err) {
    view.note(String(err));
  }
  await done;
});
