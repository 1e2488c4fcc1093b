"""docs/quickstart.md's walk-through runs as written: its Python blocks, in order, are one
script against the embedded endpoint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_quickstart_walk_through_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(QUICKSTART.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    script = "\n".join(blocks)
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    try:
        exec(compile(script, str(QUICKSTART), "exec"), namespace)
    finally:
        # Whatever happened, leave no server or thread behind.
        for name in ("worker", "hub"):
            if name in namespace:
                namespace[name].stop()
        if "aws" in namespace:
            namespace["aws"].stop()

    out = capsys.readouterr().out
    upload_id = namespace["ticket"].upload_id
    assert out.startswith("event: snapshot\n")
    ids = [line.removeprefix("id: ") for line in out.splitlines() if line.startswith("id: ")]
    seqs = [int(i.rsplit(":", 1)[1]) for i in ids]
    assert ids[0].startswith(f"{upload_id}:")
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one attempt, in order
    assert '"type":"output"' in out
    assert '"type":"done"' in out
    assert '"type":"error"' not in out
    assert namespace["outputs"] == [
        f"outputs/main/{upload_id}/hello.txt.sha256",
        f"outputs/main/{upload_id}/status.json",
    ]
