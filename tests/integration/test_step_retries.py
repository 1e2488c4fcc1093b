"""Per-step retries on the moto server: transient failures cost no redelivery."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    drain_events,
    lambda_record,
    make_buckets,
    make_queues,
    put_upload,
)
from tests.support.streaming import wait_until
from transflow import (
    JobFailedError,
    JobProcessor,
    ProcessingJob,
    ProgressQueue,
    StepContext,
    StepRetry,
    TemplateRegistry,
    make_worker,
    poller_client_config,
)
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow.cli.local import LocalAws
from transflow.processing.retries import RETRY_TIME_RESERVE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
QUICK = StepRetry(on=(ConnectionResetError,), attempts=3, initial=0.01, maximum=0.02)


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


def processor(registry: TemplateRegistry, aws: LocalAws, queues: Queues) -> JobProcessor:
    return JobProcessor(
        registry,
        s3_client=aws.s3(),
        sqs_client=aws.sqs(poller_client_config(1)),
        progress=ProgressQueue(queues.progress),
        output_bucket=OUTPUTS,
        upload_bucket=UPLOADS,
        retry_policy=FAST,
        flush_after=0.01,
        max_receive_count=3,
    )


def job_for(s3: S3Client, template: str) -> ProcessingJob:
    job = put_upload(s3, "up-1", [("in.bin", b"data")], None)
    return ProcessingJob(job.upload_id, template, job.objects, job.branch)


def test_a_step_failing_twice_then_succeeding_completes_in_one_delivery(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    registry = TemplateRegistry()
    flaky = registry.template("flaky")
    tries: list[int] = []

    @flaky.step("fetch", retry=QUICK)
    def fetch(ctx: StepContext) -> None:
        tries.append(len(tries) + 1)
        path = ctx.path("out.txt")
        path.write_text(f"try {len(tries)}")
        ctx.upload_result(path, "out.txt")  # written by each try, recorded once
        if len(tries) < 3:
            raise ConnectionResetError("the tool's mirror hung up")

    proc = processor(registry, aws, queues)
    job = job_for(s3, "flaky")
    sent = send_batch(
        sqs, queues.processing, [("up-1", OutgoingMessage(job.to_json(), "up-1", "up-1-1"))]
    )
    assert sent.ok
    worker = make_worker(
        proc, proc.sqs_client, queues.processing, concurrency=1, wait_time_seconds=1
    )
    with caplog.at_level(logging.WARNING, "transflow.processing.retries"), worker:
        wait_until(lambda: worker.stats().succeeded == 1, timeout=30, what="the job to succeed")
        received = worker.stats().received

    assert tries == [1, 2, 3]
    assert received == 1  # no redelivery
    retry_lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retry_lines) == 2  # one line per retry
    assert "ConnectionResetError" in retry_lines[0]
    events = drain_events(sqs, queues.progress)
    retrying = [e for e in events if e.extra.get("retrying")]
    assert [(e.type.value, e.step, e.extra["try"], e.extra["attempts"]) for e in retrying] == [
        ("progress", "fetch", 2, 3),
        ("progress", "fetch", 3, 3),
    ]
    assert [e.type.value for e in events].count("done") == 1
    assert [e.type.value for e in events].count("error") == 0
    status = proc.storage.read_status_record(OUTPUTS, "outputs/main/up-1/status.json")
    assert status is not None
    assert status.completed
    assert [r.name for r in status.results["fetch"]] == ["out.txt"]


def test_a_retry_wait_longer_than_the_visibility_timeout_keeps_the_message(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    flaky = registry.template("patient")
    tries: list[int] = []

    # One wait of 2.5 s against a visibility timeout of 1 s: the worker's heartbeat keeps
    # extending the message while the step waits, so no other receive sees it.
    @flaky.step(
        "fetch",
        retry=StepRetry(
            on=(ConnectionResetError,), attempts=2, initial=2.5, maximum=2.5, jitter=False
        ),
    )
    def fetch(ctx: StepContext) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionResetError("once")

    proc = processor(registry, aws, queues)
    job = job_for(s3, "patient")
    sent = send_batch(
        sqs, queues.processing, [("up-1", OutgoingMessage(job.to_json(), "up-1", "up-1-1"))]
    )
    assert sent.ok
    worker = make_worker(
        proc,
        proc.sqs_client,
        queues.processing,
        concurrency=1,
        wait_time_seconds=1,
        visibility_timeout=1,
    )
    with worker:
        wait_until(lambda: worker.stats().succeeded == 1, timeout=30, what="the job to succeed")
        stats = worker.stats()
    assert (len(tries), stats.received, stats.failed) == (2, 1, 0)
    assert stats.extended >= 1


def test_a_permanent_error_is_not_retried(aws: LocalAws, queues: Queues, s3: S3Client) -> None:
    registry = TemplateRegistry()
    strict = registry.template("strict")
    tries: list[str] = []

    @strict.step("read", retry=StepRetry(on=(Exception,), attempts=5, initial=0.01))
    def read(ctx: StepContext) -> None:
        tries.append("read")
        s3.get_object(Bucket=OUTPUTS, Key="no/such/key")  # a 404: no retry cures it

    with pytest.raises(JobFailedError, match="NoSuchKey"):
        processor(registry, aws, queues).run_job(job_for(s3, "strict"))
    assert tries == ["read"]


def test_the_retry_stops_at_the_time_budget(
    aws: LocalAws, queues: Queues, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    registry = TemplateRegistry()
    slow = registry.template("slow")
    tries: list[int] = []

    @slow.step(
        "call",
        retry=StepRetry(
            on=(ConnectionResetError,), attempts=10, initial=0.05, maximum=0.05, jitter=False
        ),
    )
    def call(ctx: StepContext) -> None:
        tries.append(1)
        raise ConnectionResetError("still down")

    # The time left, as Lambda's context (or the worker's job timeout) would say it: enough
    # for two waits of 0.05 s and the reserve, and then not.
    budget = iter([RETRY_TIME_RESERVE + 1, RETRY_TIME_RESERVE + 1, RETRY_TIME_RESERVE + 0.01])
    with (
        caplog.at_level(logging.WARNING, "transflow.processing.retries"),
        pytest.raises(JobFailedError, match="still down"),
    ):
        processor(registry, aws, queues).run_job(
            job_for(s3, "slow"), remaining_time=lambda: next(budget, 0.0)
        )
    assert len(tries) == 3
    assert any("out-of-time after 3 tries" in r.getMessage() for r in caplog.records)


class _LambdaContext:
    """Lambda's context object: the milliseconds left before the function's deadline."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def test_in_lambda_a_retry_never_runs_past_the_remaining_time(
    aws: LocalAws, queues: Queues, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    registry = TemplateRegistry()
    late = registry.template("late")
    tries: list[int] = []

    @late.step(
        "call",
        retry=StepRetry(on=(ConnectionResetError,), attempts=5, initial=2, jitter=False),
    )
    def call(ctx: StepContext) -> None:
        tries.append(1)
        raise ConnectionResetError("down")

    proc = attrs.evolve(processor(registry, aws, queues), time_margin=1.0)
    job = job_for(s3, "late")
    # 6.5 s left: a first wait of 2 s would leave less than the 5 s reserve.
    with caplog.at_level(logging.WARNING, "transflow.processing.retries"):
        response = proc.handle(
            {"Records": [lambda_record(job.to_json(), "m-1", "up-1")]}, _LambdaContext(6.5)
        )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert tries == [1]
    assert any("out-of-time after 1 tries" in r.getMessage() for r in caplog.records)
