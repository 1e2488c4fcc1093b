"""Step checkpoints on the moto server: a job killed mid-step resumes at that step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.support.durable import (
    STEPS,
    TEMPLATE,
    WorkerKilled,
    build_registry,
    expected_outputs,
    step_log,
)
from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    drain_events,
    make_buckets,
    make_queues,
    put_upload,
)
from tests.support.processes import stop_when_completed
from tests.support.streaming import wait_until
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressQueue,
    S3ObjectRef,
    SqsConfig,
    TemplateRegistry,
    TransflowConfig,
    count_requests,
    ensure_queues,
)
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._wire.keys import status_key
from transflow.cli.local import LocalAws
from transflow.processing.storage import read_status_record

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).parents[2]
FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
DATA = b"the input of a four-step job\n" * 100
PREFIX = "outputs/main/up-1/"


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


@pytest.fixture
def step_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "steps.log"
    monkeypatch.setenv("TRANSFLOW_DURABLE_LOG", str(path))
    monkeypatch.delenv("TRANSFLOW_DURABLE_HANG", raising=False)
    return path


def four_step_job(s3: S3Client, upload_id: str = "up-1") -> ProcessingJob:
    job = put_upload(s3, upload_id, [("in.txt", DATA)], None)
    return attrs.evolve(job, template_id=TEMPLATE)


def processor(registry: TemplateRegistry, aws: LocalAws, queues: Queues) -> JobProcessor:
    return JobProcessor(
        registry,
        s3_client=aws.s3(),
        sqs_client=aws.sqs(),
        progress=ProgressQueue(queues.progress),
        output_bucket=OUTPUTS,
        upload_bucket=UPLOADS,
        retry_policy=FAST,
        flush_after=0.01,
    )


def outputs_of(s3: S3Client, bucket: str, prefix: str) -> dict[str, bytes]:
    return {
        step: s3.get_object(Bucket=bucket, Key=f"{prefix}{step}.txt")["Body"].read()
        for step in STEPS
    }


def etags_of(s3: S3Client, bucket: str, prefix: str, steps: tuple[str, ...]) -> dict[str, Any]:
    heads = {step: s3.head_object(Bucket=bucket, Key=f"{prefix}{step}.txt") for step in steps}
    return {step: (h["ETag"], h["LastModified"]) for step, h in heads.items()}


def summary(events: list[ProgressEvent]) -> list[tuple[str, str | None, bool]]:
    return [(e.type.value, e.step, bool(e.extra.get("checkpoint"))) for e in events]


def test_a_killed_job_resumes_at_the_unfinished_step(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, step_file: Path
) -> None:
    proc = processor(build_registry(crash_once="four"), aws, queues)
    job = four_step_job(s3)
    with pytest.raises(WorkerKilled):
        proc.run_job(job, attempt=1)
    assert step_file.read_text().split() == ["one", "two", "three", "four"]
    before = etags_of(s3, OUTPUTS, PREFIX, STEPS[:3])
    first = drain_events(sqs, queues.progress)

    with count_requests(proc.s3_client) as requests:
        status = proc.run_job(job, attempt=2)

    # Steps one to three are not run again; four runs once more.
    assert step_log(step_file) == ["one", "two", "three", "four", "four"]
    assert status.completed
    assert status.checkpoints == ("one", "two", "three")
    assert outputs_of(s3, OUTPUTS, PREFIX) == expected_outputs(DATA)
    assert etags_of(s3, OUTPUTS, PREFIX, STEPS[:3]) == before  # not rewritten
    # Resuming: one HeadObject per reused output, one GetObject for the record (after the
    # write conditional on there being none was refused) and one for step three's output
    # (step four reads it); the input is not downloaded, since step four never takes it.
    assert requests.count("HeadObject") == 3
    assert requests.count("GetObject") == 2
    assert requests.count("PutObject") == 4  # refused, executing, step four, completed
    events = drain_events(sqs, queues.progress)
    assert summary(events) == [
        ("start", None, False),
        *[
            (kind, step, True)
            for step in STEPS[:3]
            for kind in ("step:start", "output", "step:done")
        ],
        ("step:start", "four", False),
        ("output", "four", False),
        ("step:done", "four", False),
        ("done", None, False),
    ]
    assert events[0].extra["resumed"] == 3
    assert [e.type.value for e in first + events].count("done") == 1
    # The hub deduplicates on channel and seq: the replayed events must not collide with
    # the first attempt's.
    assert min(e.seq or 0 for e in events) > max(e.seq or 0 for e in first)


def test_a_changed_output_is_redone_from_its_step(
    aws: LocalAws, queues: Queues, s3: S3Client, step_file: Path
) -> None:
    proc = processor(build_registry(crash_once="four"), aws, queues)
    job = four_step_job(s3)
    with pytest.raises(WorkerKilled):
        proc.run_job(job, attempt=1)
    s3.put_object(Bucket=OUTPUTS, Key=PREFIX + "two.txt", Body=b"tampered")

    proc.run_job(job, attempt=2)

    assert step_log(step_file) == ["one", "two", "three", "four", "two", "three", "four"]
    assert outputs_of(s3, OUTPUTS, PREFIX) == expected_outputs(DATA)


def test_a_step_that_opts_out_runs_again_and_so_do_the_steps_after_it(
    aws: LocalAws, queues: Queues, s3: S3Client, step_file: Path
) -> None:
    registry = build_registry(crash_once="four", uncheckpointed=("two",))
    proc = processor(registry, aws, queues)
    job = four_step_job(s3)
    with pytest.raises(WorkerKilled):
        proc.run_job(job, attempt=1)

    proc.run_job(job, attempt=2)

    assert step_log(step_file) == ["one", "two", "three", "four", "two", "three", "four"]
    assert outputs_of(s3, OUTPUTS, PREFIX) == expected_outputs(DATA)


def test_another_job_for_the_upload_does_not_reuse_the_checkpoints(
    aws: LocalAws, queues: Queues, s3: S3Client, step_file: Path
) -> None:
    proc = processor(build_registry(crash_once="four"), aws, queues)
    job = four_step_job(s3)
    with pytest.raises(WorkerKilled):
        proc.run_job(job, attempt=1)

    proc.run_job(attrs.evolve(job, fields={"slug": "other"}), attempt=1, attempt_token="b")

    assert step_log(step_file) == ["one", "two", "three", "four", *STEPS]


def test_a_checkpoint_costs_one_put_per_step_but_the_last(
    aws: LocalAws, queues: Queues, s3: S3Client, step_file: Path
) -> None:
    counts = {}
    for checkpoint in (True, False):
        proc = processor(build_registry(checkpoint=checkpoint), aws, queues)
        job = four_step_job(s3, f"up-{checkpoint}")
        with count_requests(proc.s3_client) as requests:
            proc.run_job(job)
        counts[checkpoint] = requests.count("PutObject")
    assert counts[False] == 4 + 2  # outputs + executing and completed records
    assert counts[True] == counts[False] + 3


# -- a real worker process, killed with SIGKILL mid-step -----------------------------------


def _worker(aws: LocalAws, config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transflow",
            "worker",
            *("--templates", "tests.support.durable:registry"),
            *("--upload-bucket", "uploads", "--output-bucket", "outputs"),
            *("--concurrency", "1", "--poll-wait", "1", "--visibility-timeout", "2"),
            *("--config", str(config), "--endpoint-url", aws.endpoint_url),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_worker_killed_mid_step_is_resumed_by_the_next_one(
    aws: LocalAws, s3: S3Client, tmp_path: Path, step_file: Path
) -> None:
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="outputs")
    sqs = aws.sqs()
    pipeline = TransflowConfig(project="ck", sqs=SqsConfig(max_receive_count=3))
    urls = ensure_queues(sqs, pipeline)
    config = tmp_path / "transflow.config.json"
    config.write_text(json.dumps({"project": "ck", "sqs": {"maxReceiveCount": 3}}))
    s3.put_object(Bucket="uploads", Key="uploads/main/up-9/in.txt", Body=DATA)
    job = ProcessingJob(
        "up-9", TEMPLATE, [S3ObjectRef("uploads", "uploads/main/up-9/in.txt")], "main"
    )
    sent = send_batch(
        sqs, urls.processing, [("up-9", OutgoingMessage(job.to_json(), "up-9", "up-9-1"))]
    )
    assert sent.ok
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "TRANSFLOW_DURABLE_LOG": str(step_file),
    }
    first = _worker(aws, config, {**env, "TRANSFLOW_DURABLE_HANG": "four"})
    try:
        wait_until(
            lambda: "four:hang" in step_log(step_file), timeout=60, what="step four to start"
        )
    finally:
        first.kill()  # SIGKILL: no drain, no error record, the message stays in flight
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    prefix = "outputs/main/up-9/"
    before = etags_of(s3, "outputs", prefix, STEPS[:3])

    second = _worker(aws, config, env)
    err = stop_when_completed(
        second, s3, "outputs", status_key("main", "up-9"), what="the second worker to complete it"
    )
    assert second.returncode == 0, err

    assert step_log(step_file) == ["one", "two", "three", "four", "four:hang", "four"]
    assert outputs_of(s3, "outputs", prefix) == expected_outputs(DATA)
    assert etags_of(s3, "outputs", prefix, STEPS[:3]) == before
    status = read_status_record(s3, "outputs", status_key("main", "up-9"))
    assert status is not None
    assert status.attempt == 2
    events = drain_events(sqs, urls.progress)
    assert [e.type.value for e in events].count("done") == 1
    assert len({(e.channel, e.seq) for e in events}) == len(events)  # the hub drops none
    resumed = [e for e in events if e.type.value == "start" and e.extra.get("resumed")]
    assert [e.extra["resumed"] for e in resumed] == [3]
