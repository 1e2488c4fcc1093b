"""The dev page's script (cli/demo/static/app.js, an ES module on the shipped browser client),
run under Node with a minimal DOM: how a card shows sizes, bytes, a failed, a retrying and a
finished upload, that errors go on the page (never ``alert()``), and that the file chooser is
cleared after an upload. Skipped without ``node``; the browser test (tests/e2e) drives the
real page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src/transflow"
NODE = shutil.which("node")

HARNESS = Path(__file__).resolve().parents[1] / "web" / "dev_page_harness.mjs"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_cards_show_sizes_bytes_and_failures_once_and_errors_in_the_page(tmp_path: Path) -> None:
    # The page imports ./transflow.js, as the dev stack serves them side by side.
    shutil.copy(SRC / "cli/demo/static/app.js", tmp_path / "app.js")
    shutil.copy(SRC / "web/static/transflow.js", tmp_path / "transflow.js")
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(HARNESS), (tmp_path / "app.js").as_uri(), (tmp_path / "transflow.js").as_uri()],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["head"] == "1 file(s), 12.0 MiB: a.wav (12.0 MiB)"
    assert out["bytes"] == ["5.0 MiB of 12.0 MiB uploaded", str(5 * 1024 * 1024)]
    assert out["retrying"] == ["retrying 40% — disk full", "retrying"]
    assert out["nextAttempt"] == "processing 0%"  # the last attempt's error is history
    assert out["failed"] == ["failed — disk full", "100%", "upload error"]
    assert out["chooser"] == ""
    assert out["uploadedBytes"] == "2.9 KiB of 2.9 KiB uploaded"
    state, log = out["errorTexts"]
    assert "boom" in state
    assert "boom" not in log  # said once, on the state line
    assert log == ""  # not "uploaded; waiting for the bridge" under the error
    assert out["outputs"] == ["out/a.wav (2.0 KiB)"]
    # A refused ticket: the reason on the page, no card, no alert().
    assert out["refused"] == ["a.wav: 3000 bytes is over the limit", False, 0]
    # The chooser takes what the chosen template's option declares, else anything.
    assert out["accept"] == [".wav,audio/wav", ""]
