"""Every Python block of README.md, PACKAGE.md and docs/*.md runs as written, after only the
steps README.md names ("Try it on your machine"): ``transflow local``'s environment, then its
``transflow init`` and ``transflow queues ensure`` lines, in an empty directory.

Conventions, stated in README.md too:

- A page's blocks run in order as one script (a later block may use an earlier one's names).
- A block whose first line starts with ``# Not run by the tests:`` is skipped; the rest of
  that line says why (it blocks until SIGTERM, say). The marker is visible on the page.
- docs/quickstart.md is run by tests/integration/test_quickstart.py (it starts its own
  endpoint); docs/api.md holds signatures generated from the docstrings, not scripts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from transflow import ProgressHub, QueuePoller
from transflow.cli.app import main
from transflow.cli.local import LocalAws, local_environment

ROOT = Path(__file__).resolve().parents[2]
SKIP_MARKER = "# Not run by the tests:"
NOT_HERE = {"quickstart.md", "api.md"}
PAGES = sorted(
    p
    for p in [ROOT / "README.md", ROOT / "PACKAGE.md", *(ROOT / "docs").glob("*.md")]
    if p.exists() and p.name not in NOT_HERE and "```python" in p.read_text(encoding="utf-8")
)


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def readme_setup_commands() -> list[list[str]]:
    """The ``$ transflow ...`` lines of README.md's "Try it" block, but ``local`` (the test's
    endpoint stands in for it)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Try it on your machine", 1)[1].split("\n## ", 1)[0]
    commands = []
    for line in section.splitlines():
        if line.startswith("$ transflow ") and not line.startswith("$ transflow local"):
            commands.append(shlex.split(line.removeprefix("$ transflow "), comments=True))
    return commands


def test_the_readme_names_its_setup_steps() -> None:
    assert [c[:2] for c in readme_setup_commands()] == [
        ["init", "--project"],
        ["queues", "ensure"],
    ]


def test_every_page_with_python_blocks_is_covered() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "configuration.md", "ingest.md", "operations.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_python_blocks_run_as_written(
    page: Path,
    aws: LocalAws,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in local_environment(aws.endpoint_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    for command in readme_setup_commands():
        assert main(command) == 0, f"transflow {shlex.join(command)}: {capsys.readouterr()}"

    blocks = python_blocks(page.read_text(encoding="utf-8"))
    runnable = [b for b in blocks if not b.startswith(SKIP_MARKER)]
    for block in blocks:
        if block not in runnable:
            assert len(block.splitlines()[0]) > len(SKIP_MARKER) + 5, "say why it is not run"
    if not runnable:
        pytest.skip(f"{page.name}: every block says why it is not run")
    namespace: dict[str, Any] = {"__name__": f"doc_{page.stem}"}
    try:
        for block in runnable:
            exec(compile(block, str(page), "exec"), namespace)
    finally:
        # Whatever happened, leave no poller thread behind.
        for value in namespace.values():
            if isinstance(value, ProgressHub | QueuePoller):
                value.stop()
