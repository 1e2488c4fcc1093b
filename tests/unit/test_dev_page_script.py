"""The dev page's script (cli/demo/static/app.js), run under Node with a minimal DOM: how a
card shows a failed, a retrying and a finished upload, and that the file chooser is cleared
after an upload. Skipped without ``node``; the browser test (tests/e2e) drives the real page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "src/transflow/cli/demo/static/app.js"
NODE = shutil.which("node")

HARNESS = r"""
const vm = require("vm");
const fs = require("fs");
class Node {
  constructor(tag) {
    this.tag = tag; this.className = ""; this.textContent = ""; this.dataset = {};
    this.style = {}; this.children = []; this.listeners = {}; this.value = "";
  }
  append(...c) { this.children.push(...c); }
  prepend(...c) { this.children.unshift(...c); }
  replaceChildren(...c) { this.children = c; }
  addEventListener(name, fn) { this.listeners[name] = fn; }
}
const nodes = { uploads: new Node("div"), "upload-form": new Node("form"),
                files: new Node("input"), template: new Node("select") };
nodes.files.files = [{ name: "a.wav", type: "audio/wav", size: 3 }];
nodes.template.value = "audio-normalise";
nodes.template.selectedOptions = [{ dataset: { accept: ".wav,audio/wav" } }];
const sources = [];
const context = {
  console,
  document: { getElementById: (id) => nodes[id], createElement: (t) => new Node(t) },
  FormData: class { append() {} },
  EventSource: class { constructor(url) { this.url = url; sources.push(this); }
                       addEventListener(n, fn) { this["on" + n] = fn; } close() {} },
  fetch: async (url) => ({ ok: true, json: async () => (
    url === "api/uploads"
      ? { uploadId: "u1", branch: "main", files: [{ url: "http://s3", fields: {} }] }
      : { outputs: [] }) }),
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const out = {};
out.accept = [nodes.files.accept];
nodes.template.selectedOptions = [{ dataset: {} }];
nodes.template.listeners.change();
out.accept.push(nodes.files.accept);
nodes.template.selectedOptions = [{ dataset: { accept: ".wav,audio/wav" } }];
nodes.template.listeners.change();
const view = vm.runInContext("card", context)({ uploadId: "u1" }, [{ name: "a.wav" }]);
const box = nodes.uploads.children[0];
const [, bar, state, log] = box.children;
const fold = vm.runInContext("fold", context);
let s = { state: "queued", percent: 0 };
s = fold(s, { type: "start", seq: 1 });
s = fold(s, { type: "progress", seq: 2, percent: 40 });
s = fold(s, { type: "error", seq: 3, retrying: true, message: "disk full" });
view.show(s); out.retrying = [state.textContent, box.dataset.state];
s = fold(s, { type: "start", seq: 4 });
view.show(s); out.nextAttempt = state.textContent;
s = fold(s, { type: "error", seq: 5, retrying: false, message: "disk full" });
view.show(s); out.failed = [state.textContent, bar.children[0].style.width, box.className];
(async () => {
  await nodes["upload-form"].listeners.submit({ preventDefault() {} }) ;
})();
setTimeout(() => {
  out.chooser = nodes.files.value;
  const source = sources[0];
  source.onmessage({ data: JSON.stringify({ type: "error", seq: 1, message: "boom" }) });
  const card = nodes.uploads.children[0];
  out.errorTexts = [card.children[2].textContent, card.children[3].textContent];
  console.log(JSON.stringify(out));
  process.exit(0);
}, 0);  // a timer runs once the submit handler's promise chain (all stubs) has settled
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_cards_show_failures_once_and_the_chooser_is_cleared(tmp_path: Path) -> None:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS, encoding="utf-8")
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(harness), str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["retrying"] == ["retrying 40% — disk full", "retrying"]
    assert out["nextAttempt"] == "processing 0%"  # the last attempt's error is history
    assert out["failed"] == ["failed — disk full", "100%", "upload error"]
    assert out["chooser"] == ""
    state, log = out["errorTexts"]
    assert "boom" in state
    assert "boom" not in log  # said once, on the state line
    assert log == ""  # not "uploaded; waiting for the bridge" under the error
    # The chooser takes what the chosen template's option declares, else anything.
    assert out["accept"] == [".wav,audio/wav", ""]
