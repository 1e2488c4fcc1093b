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

Run: ``python -m bench.cold_import [--rounds N] [--against ../main]``.
``python -X importtime -c "import boto3; import examples.lambda_processor"`` shows where the
time goes.
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
    # What the handlers load on first use instead (the wire converter, tenacity's retry
    # controller, the status record's converter): paid by the first invocation, not saved.
    "bridge, then its first job's JSON and retry": (
        "import examples.lambda_bridge; from transflow import ProcessingJob; "
        "from transflow._aws.retry import RetryPolicy; RetryPolicy().retrying(); "
        "ProcessingJob.from_json(_JOB).to_json()"
    ),
    "processor, then its first job, retry and status record": (
        "import examples.lambda_processor; from transflow import ProcessingJob; "
        "from transflow._aws.retry import RetryPolicy; RetryPolicy().retrying(); "
        "ProcessingJob.from_json(_JOB).to_json(); "
        "from transflow.processing.status import AssemblyStatus; "
        "AssemblyStatus.from_json(_STATUS)"
    ),
    "SSE stream (ProgressHub, sse)": "from transflow import ProgressHub, sse, upload_channel",
    "scheduled DLQ announce (transflow.ops.announce)": "from transflow.ops import announce",
    "import transflow (the facade)": "import transflow",
}
# The handlers the target applies to, and the target, in milliseconds over boto3.
TARGETED = ("bridge (examples/lambda_bridge.py)", "processor (examples/lambda_processor.py)")
TARGET_MS = 40.0

_PROBE = """
import time
_JOB = ('{{"uploadId":"u1","templateId":"t","branch":"main",'
    '"objects":[{{"bucket":"b","key":"uploads/main/u1/a"}}]}}')
_STATUS = ('{{"assembly_id":"u1","upload_id":"u1","template_id":"t","branch":"main","user":null,'
    '"job_fingerprint":"f","attempt":1,"execution_start":"2026-12-04T00:00:00Z"}}')
t0, c0 = time.perf_counter(), time.process_time()
import boto3
t1, c1 = time.perf_counter(), time.process_time()
{statement}
t2, c2 = time.perf_counter(), time.process_time()
print(t1 - t0, t2 - t1, c1 - c0, c2 - c1)
"""


def _environment(checkout: Path | None = None) -> dict[str, str]:
    """The child's environment: ``checkout``'s src/ and examples first (default: the
    transflow this process runs and this repository), whatever installed transflow."""
    if checkout is None:
        import transflow  # noqa: PLC0415

        root, src = ROOT, Path(transflow.__file__).resolve().parents[1]
    else:
        root, src = checkout, checkout / "src"
    paths = [str(root), str(src)]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def sample(statement: str, env: dict[str, str]) -> tuple[float, float, float, float]:
    """One fresh interpreter: wall seconds for ``import boto3``, then for ``statement``;
    then the same two as CPU seconds."""
    # The first PYTHONPATH entry is the checkout: its examples package is found from there.
    out = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        cwd=env["PYTHONPATH"].split(os.pathsep)[0],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    base, extra, base_cpu, extra_cpu = (float(v) for v in out[-4:])
    return base, extra, base_cpu, extra_cpu


def _figures(wall: list[float], cpu: list[float], boto3_ms: float) -> dict[str, float]:
    median_ms = statistics.median(wall) * 1000
    return {
        "median_ms_over_boto3": round(median_ms, 2),
        "p90_ms_over_boto3": round(percentile(wall, 90) * 1000, 2),
        "ratio_to_boto3": round((boto3_ms + median_ms) / boto3_ms, 3),
        "median_cpu_ms_over_boto3": round(statistics.median(cpu) * 1000, 2),
    }


def run(
    *,
    rounds: int = 40,
    handlers: dict[str, str] | None = None,
    against: Path | None = None,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Measure ``rounds`` cold starts of every handler; write cold_import.{md,json}.

    ``against``: another checkout (say, main's) measured in the same rounds, interleaved, so
    that a change is compared with what it changes under the same machine load."""
    handlers = handlers or HANDLERS
    trees = {"this": _environment()}
    if against is not None:
        trees["against"] = _environment(against.resolve())
    for env in trees.values():  # compile bytecode; not measured
        for statement in handlers.values():
            sample(statement, env)
    boto3_s: list[float] = []
    boto3_cpu: list[float] = []
    wall: dict[tuple[str, str], list[float]] = {(n, t): [] for n in handlers for t in trees}
    cpu: dict[tuple[str, str], list[float]] = {(n, t): [] for n in handlers for t in trees}
    order = list(wall)
    rng = random.Random(11)  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        rng.shuffle(order)
        for name, tree in order:
            base, extra, base_cpu, extra_cpu = sample(handlers[name], trees[tree])
            boto3_s.append(base)
            boto3_cpu.append(base_cpu)
            wall[name, tree].append(extra)
            cpu[name, tree].append(extra_cpu)
    boto3_ms = statistics.median(boto3_s) * 1000
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for name in handlers:
        figures = _figures(wall[name, "this"], cpu[name, "this"], boto3_ms)
        target = TARGET_MS if name in TARGETED else None
        median_ms = figures["median_ms_over_boto3"]
        results[name] = {
            "statement": handlers[name],
            **figures,
            "target_ms": target,
            "meets_target": None if target is None else median_ms <= target,
        }
        row: list[Any] = [name, f"`{handlers[name]}`"]
        if against is not None:
            before = _figures(wall[name, "against"], cpu[name, "against"], boto3_ms)
            results[name]["against"] = before
            row.append(before["median_ms_over_boto3"])
        verdict = "met" if target is not None and median_ms <= target else "missed"
        row += [
            median_ms,
            figures["p90_ms_over_boto3"],
            f"{figures['ratio_to_boto3']:.2f}x",
            figures["median_cpu_ms_over_boto3"],
            "-" if target is None else f"<= {target:.0f} ({verdict})",
        ]
        rows.append(row)
    headers = ["handler", "imports after boto3"]
    if against is not None:
        headers.append(f"median ms, {against.name}")
    headers += ["median ms", "p90 ms", "whole / boto3", "median CPU ms", "target ms"]
    table = markdown_table(headers, rows)
    table += (
        f"\n\n`import boto3` alone: median {boto3_ms:.1f} ms, p90 "
        f"{percentile(boto3_s, 90) * 1000:.1f} ms, CPU median "
        f"{statistics.median(boto3_cpu) * 1000:.1f} ms ({len(boto3_s)} fresh interpreters); "
        f"{rounds} interleaved rounds. Wall time is what a cold start waits; CPU time is the "
        "same work less the waits for a busy machine's other processes."
    )
    data = {
        "rounds": rounds,
        "against": None if against is None else str(against),
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
    parser.add_argument(
        "--against",
        type=Path,
        metavar="CHECKOUT",
        help="another checkout (with src/ and examples/) to measure in the same rounds",
    )
    args = parser.parse_args(argv)
    run(rounds=args.rounds, against=args.against)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
