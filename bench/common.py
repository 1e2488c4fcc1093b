"""What every benchmark shares: the embedded endpoint, request counting, and writing a
Markdown table and a JSON file under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import transflow

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """The machine the numbers came from."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "transflow": transflow.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, table: str, data: dict[str, Any]) -> Path:
    """bench/results/{name}.md and {name}.json; returns the Markdown path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    md = RESULTS / f"{name}.md"
    md.write_text(
        f"# {title}\n\n{table}\n\nMachine: {info['platform']}, {info['cpus']} CPUs, "
        f"Python {info['python']}, transflow {info['transflow']}, {info['when']}.\n",
        encoding="utf-8",
    )
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": info, **data}, indent=2, sort_keys=True), encoding="utf-8"
    )
    print(md.read_text(encoding="utf-8"))
    return md
