"""Step checkpoints: a 4-step job killed in its last step, run again with and without
checkpoints, and what checkpoints cost a job that is never killed.

Each step stands for a tool run of ``--step-seconds`` (a sleep: wall time, not CPU, as
ffmpeg waiting on I/O would spend it) and writes one output of ``--output-bytes``. The
"kill" is an exception no handler catches, raised the first time step 4 runs: the first
delivery leaves no error record and no event, as a SIGKILL would (the SIGKILL itself is
tested in tests/integration/test_checkpoints.py). The second delivery is timed and its
requests counted (``transflow._aws.metering.count_requests``).

Run: ``python -m bench.checkpoints [--jobs N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import Endpoint, by_operation, markdown_table, serve, write_result
from bench.pipeline import OUTPUTS, UPLOADS, make_buckets, make_queues
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressQueue,
    S3ObjectRef,
    StepContext,
    TemplateRegistry,
)
from transflow._aws.metering import RequestCounter, count_requests
from transflow._aws.retry import RetryPolicy

STEPS = ("decode", "filter", "encode", "package")
TEMPLATE = "four-steps"


class Killed(BaseException):
    """The worker dying mid-step: nothing in the processor catches it."""


def _registry(
    *, checkpoint: bool, step_seconds: float, output_bytes: int, runs: list[str], kill: bool
) -> TemplateRegistry:
    registry = TemplateRegistry()
    template = registry.template(TEMPLATE)
    killed: list[bool] = []

    def make(index: int, name: str) -> None:
        def run(ctx: StepContext) -> None:
            runs.append(name)
            if index:
                ctx.result_file(f"{STEPS[index - 1]}.bin")  # what the previous step left
            time.sleep(step_seconds)
            if kill and index == len(STEPS) - 1 and not killed:
                killed.append(True)
                raise Killed(name)
            out = ctx.path(f"{name}.bin")
            out.write_bytes(name.encode()[:1] * output_bytes)
            ctx.upload_result(out, f"{name}.bin", "application/octet-stream")

        template.add_step(name, run, checkpoint=checkpoint)

    for index, name in enumerate(STEPS):
        make(index, name)
    return registry


def _processor(ep: Endpoint, registry: TemplateRegistry, progress: str) -> tuple[JobProcessor, Any]:
    counter = RequestCounter()
    s3 = ep.s3(counter)
    processor = JobProcessor(
        registry,
        s3_client=s3,
        sqs_client=ep.sqs(counter),
        progress=ProgressQueue(progress),
        output_bucket=OUTPUTS,
        upload_bucket=UPLOADS,
        retry_policy=RetryPolicy(attempts=3, initial=0.01, maximum=0.1),
        flush_after=0.05,
    )
    return processor, s3


def _job(ep: Endpoint, upload_id: str) -> ProcessingJob:
    key = f"uploads/main/{upload_id}/in.bin"
    ep.s3(RequestCounter()).put_object(Bucket=UPLOADS, Key=key, Body=b"x" * 1024)
    return ProcessingJob(upload_id, TEMPLATE, [S3ObjectRef(UPLOADS, key)], "main")


def killed_after_step_3(
    ep: Endpoint, progress: str, *, checkpoint: bool, step_seconds: float, output_bytes: int
) -> dict[str, Any]:
    """One job killed in step 4, then delivered again: what the second delivery redid."""
    runs: list[str] = []
    registry = _registry(
        checkpoint=checkpoint,
        step_seconds=step_seconds,
        output_bytes=output_bytes,
        runs=runs,
        kill=True,
    )
    processor, s3 = _processor(ep, registry, progress)
    job = _job(ep, f"killed-{checkpoint}")
    with contextlib.suppress(Killed):
        processor.run_job(job, attempt=1)
    first = len(runs)
    with count_requests(s3, processor.sqs_client) as requests:
        started = time.perf_counter()
        status = processor.run_job(job, attempt=2)
        seconds = time.perf_counter() - started
    assert status.completed
    return {
        "checkpoints": checkpoint,
        "steps_run_again": runs[first:],
        "redone_steps": len(runs[first:]),
        "second_delivery_s": round(seconds, 3),
        "s3": by_operation(requests, "s3"),
    }


def overhead(ep: Endpoint, progress: str, *, jobs: int, output_bytes: int) -> list[dict[str, Any]]:
    """Jobs that are never killed, with no step time: what checkpoints add. The two modes
    take turns, job by job, so that a busy moment of the machine weighs on both alike."""
    modes = []
    for checkpoint in (True, False):
        registry = _registry(
            checkpoint=checkpoint, step_seconds=0.0, output_bytes=output_bytes, runs=[], kill=False
        )
        processor, s3 = _processor(ep, registry, progress)
        modes.append((checkpoint, processor, s3))
    durations: dict[bool, list[float]] = {True: [], False: []}
    with count_requests(modes[0][2]) as on, count_requests(modes[1][2]) as off:
        for n in range(jobs):
            for checkpoint, processor, _ in modes:
                job = _job(ep, f"clean-{checkpoint}-{n}")
                started = time.perf_counter()
                processor.run_job(job)
                durations[checkpoint].append((time.perf_counter() - started) * 1000)
    return [
        {
            "checkpoints": checkpoint,
            "jobs": jobs,
            "job_ms_median": round(statistics.median(durations[checkpoint]), 2),
            "s3_per_job": {op: n / jobs for op, n in by_operation(counter, "s3").items()},
        }
        for checkpoint, counter in ((True, on), (False, off))
    ]


def run(
    ep: Endpoint,
    *,
    jobs: int = 40,
    step_seconds: float = 0.5,
    output_bytes: int = 64 * 1024,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    ep.reset()
    make_buckets(ep.s3(RequestCounter()))
    progress = make_queues(ep.sqs(RequestCounter()), prefix="ckpt").progress
    killed = [
        killed_after_step_3(
            ep, progress, checkpoint=c, step_seconds=step_seconds, output_bytes=output_bytes
        )
        for c in (True, False)
    ]
    clean = overhead(ep, progress, jobs=jobs, output_bytes=output_bytes)
    with_, without = clean
    puts = with_["s3_per_job"].get("PutObject", 0) - without["s3_per_job"].get("PutObject", 0)
    per_step_ms = (with_["job_ms_median"] - without["job_ms_median"]) / (len(STEPS) - 1)
    table = markdown_table(
        ["checkpoints", "steps run again", "second delivery s", "S3 requests of it"],
        [
            [
                "on" if k["checkpoints"] else "off",
                ", ".join(k["steps_run_again"]),
                k["second_delivery_s"],
                ", ".join(f"{op} {n}" for op, n in sorted(k["s3"].items())),
            ]
            for k in killed
        ],
    )
    table += "\n\n" + markdown_table(
        ["checkpoints", "jobs", "median ms/job", "S3 requests/job"],
        [
            [
                "on" if c["checkpoints"] else "off",
                c["jobs"],
                c["job_ms_median"],
                ", ".join(f"{op} {n:g}" for op, n in sorted(c["s3_per_job"].items())),
            ]
            for c in clean
        ],
    )
    table += (
        f"\n\nA 4-step job ({step_seconds} s a step) killed in step 4: with checkpoints the "
        f"next delivery runs {killed[0]['redone_steps']} step(s), without "
        f"{killed[1]['redone_steps']}. Checkpoints cost {puts:g} PutObject a job "
        f"({puts / (len(STEPS) - 1):g} per step but the last, whose checkpoint is the "
        f"completion record) and {per_step_ms:.1f} ms per step on moto (median of {jobs} "
        "jobs with no step time)."
    )
    data = {
        "sizes": {"jobs": jobs, "step_seconds": step_seconds, "output_bytes": output_bytes},
        "killed": killed,
        "clean": clean,
        "put_per_job": puts,
        "ms_per_step": round(per_step_ms, 2),
    }
    write_result(
        "checkpoints",
        "Step checkpoints: a job killed after step 3, and their cost",
        table,
        data,
        out,
        quiet=quiet,
    )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40, help="clean jobs per mode (default 40)")
    parser.add_argument(
        "--step-seconds", type=float, default=0.5, help="time of each step (default 0.5)"
    )
    args = parser.parse_args(argv)
    with serve() as ep:
        run(ep, jobs=args.jobs, step_seconds=args.step_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
