"""Cold import: what each Lambda handler's modules cost at a cold start, above ``import boto3``.

Every sample is a fresh interpreter that times, with ``time.perf_counter`` inside the
process, ``import boto3`` and then the handler's own imports (boto3 already loaded), so the
interpreter's start and exit are not counted. A handler's figure is the second time: what
transflow and the handler add to the boto3 every AWS Lambda in Python pays anyway. Samples
of all handlers are interleaved in a shuffled order, round after round, so a slow moment of
the machine spreads over every handler instead of one. Reported: median and p90 in
milliseconds over boto3, and the ratio of the handler's whole cold import (boto3 included)
to boto3 alone, from medians of the same run. Target: <= 40 ms over boto3 for the bridge and
processor handlers.

Bytecode is compiled once before measuring (an unmeasured warm-up round), as in a deployed
package whose ``.pyc`` files exist or were written on the first cold start.

Run: ``python -m bench.cold_import [--rounds N]``. ``python -X importtime -c "import boto3;
import examples.lambda_processor"`` shows where the time goes.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, markdown_table, percentile, write_result

# Handler -> the statement a cold start runs after ``import boto3``.
HANDLERS: dict[str, str] = {
    "bridge (examples/lambda_bridge.py)": "import examples.lambda_bridge",
    "processor (examples/lambda_processor.py)": "import examples.lambda_processor",
    "SSE stream (ProgressHub, sse)": "from transflow import ProgressHub, sse, upload_channel",
    "scheduled DLQ announce (transflow.ops.dlq)": "from transflow.ops import dlq",
    "import transflow (the facade)": "import transflow",
}
# The handlers the target applies to, and the target, in milliseconds over boto3.
TARGETED = ("bridge (examples/lambda_bridge.py)", "processor (examples/lambda_processor.py)")
TARGET_MS = 40.0

_PROBE = """
import time
t0, c0 = time.perf_counter(), time.process_time()
import boto3
t1, c1 = time.perf_counter(), time.process_time()
{statement}
t2, c2 = time.perf_counter(), time.process_time()
print(t1 - t0, t2 - t1, c1 - c0, c2 - c1)
"""


def _environment() -> dict[str, str]:
    # The child must find this checkout's transflow and examples, whatever installed them.
    import transflow  # noqa: PLC0415

    src = str(Path(transflow.__file__).resolve().parents[1])
    paths = [str(ROOT), src, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def sample(statement: str, env: dict[str, str]) -> tuple[float, float, float, float]:
    """One fresh interpreter: wall seconds for ``import boto3``, then for ``statement``;
    then the same two as CPU seconds."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    base, extra, base_cpu, extra_cpu = (float(v) for v in out[-4:])
    return base, extra, base_cpu, extra_cpu


def run(
    *,
    rounds: int = 40,
    handlers: dict[str, str] | None = None,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Measure ``rounds`` cold starts of every handler; write cold_import.{md,json}."""
    handlers = handlers or HANDLERS
    env = _environment()
    for statement in handlers.values():  # compile bytecode; not measured
        sample(statement, env)
    boto3_s: list[float] = []
    boto3_cpu: list[float] = []
    over: dict[str, list[float]] = {name: [] for name in handlers}
    over_cpu: dict[str, list[float]] = {name: [] for name in handlers}
    order = list(handlers)
    rng = random.Random(11)  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            base, extra, base_cpu, extra_cpu = sample(handlers[name], env)
            boto3_s.append(base)
            over[name].append(extra)
            boto3_cpu.append(base_cpu)
            over_cpu[name].append(extra_cpu)
    boto3_ms = statistics.median(boto3_s) * 1000
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for name in handlers:
        median_ms = statistics.median(over[name]) * 1000
        p90_ms = percentile(over[name], 90) * 1000
        cpu_ms = statistics.median(over_cpu[name]) * 1000
        ratio = (boto3_ms + median_ms) / boto3_ms
        target = TARGET_MS if name in TARGETED else None
        results[name] = {
            "statement": handlers[name],
            "median_ms_over_boto3": round(median_ms, 2),
            "p90_ms_over_boto3": round(p90_ms, 2),
            "ratio_to_boto3": round(ratio, 3),
            "median_cpu_ms_over_boto3": round(cpu_ms, 2),
            "target_ms": target,
            "meets_target": None if target is None else median_ms <= target,
        }
        verdict = "met" if target is not None and median_ms <= target else "missed"
        goal = "-" if target is None else f"<= {target:.0f} ({verdict})"
        rows.append([name, f"`{handlers[name]}`", median_ms, p90_ms, f"{ratio:.2f}x", cpu_ms, goal])
    table = markdown_table(
        [
            "handler",
            "imports after boto3",
            "median ms",
            "p90 ms",
            "whole / boto3",
            "median CPU ms",
            "target ms",
        ],
        rows,
    )
    table += (
        f"\n\n`import boto3` alone: median {boto3_ms:.1f} ms, p90 "
        f"{percentile(boto3_s, 90) * 1000:.1f} ms, CPU median "
        f"{statistics.median(boto3_cpu) * 1000:.1f} ms ({len(boto3_s)} fresh interpreters); "
        f"{rounds} interleaved rounds. Wall time is what a cold start waits; CPU time is the "
        "same work less the waits for a busy machine's other processes."
    )
    data = {
        "rounds": rounds,
        "boto3_median_ms": round(boto3_ms, 2),
        "boto3_p90_ms": round(percentile(boto3_s, 90) * 1000, 2),
        "boto3_median_cpu_ms": round(statistics.median(boto3_cpu) * 1000, 2),
        "handlers": results,
    }
    write_result("cold_import", "Cold import above boto3", table, data, directory=out, quiet=quiet)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="fresh interpreters per handler")
    args = parser.parse_args(argv)
    run(rounds=args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
