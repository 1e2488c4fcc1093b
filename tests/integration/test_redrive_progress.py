"""A job that failed for good, fixed and redriven from the dead-letter queue: a browser that
watched it fail sees the new run to ``done`` (its receive count restarts at 1, so its events
must still number after the failed run's and must not be deduplicated away)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from tests.support.streaming import wait_until
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    S3ObjectRef,
    SqsConfig,
    StepContext,
    TemplateRegistry,
    TransflowConfig,
    ensure_queues,
    make_worker,
)
from transflow._aws.poller import poller_client_config
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow.cli.local import LocalAws
from transflow.ops.redrive import redrive
from transflow.streaming.snapshot import UploadState, fold_event

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.mark.localstack_xfail(
    "LocalStack has StartMessageMoveTask, and its move keeps the message's deduplication id: "
    "within 5 minutes of the original send the processing queue drops the moved job as a "
    "duplicate while the task reports it moved (moto has no move task, so redrive re-sends "
    "with a fresh deduplication id and the job runs). Not so on AWS: SQS replaces a message's "
    "deduplication id with its message id when it moves it to a FIFO dead-letter queue "
    "(SQS Developer Guide, 'Configure a dead-letter queue redrive'), so the move back cannot "
    "collide with the original send"
)
def test_a_redriven_job_shows_its_new_run_to_a_subscriber_who_saw_it_fail(
    aws: LocalAws, s3: S3Client
) -> None:
    sqs = aws.sqs(poller_client_config(4))
    urls = ensure_queues(sqs, TransflowConfig(project="rd", sqs=SqsConfig(max_receive_count=2)))
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="outputs")
    s3.put_object(Bucket="uploads", Key="uploads/main/up-9/a.txt", Body=b"data")
    registry = TemplateRegistry()
    template = registry.template("flaky", output_bucket="outputs")
    broken = {"yes": True}

    @template.step("work")
    def work(ctx: StepContext) -> None:
        if broken["yes"]:
            raise RuntimeError("a bug, fixed before the redrive")
        ctx.progress(100)

    processor = JobProcessor(
        registry,
        s3_client=s3,
        upload_bucket="uploads",
        sqs_client=sqs,
        progress=ProgressQueue(urls.progress),
        max_receive_count=2,
        flush_after=0.05,
    )
    worker = make_worker(
        processor, sqs, urls.processing, wait_time_seconds=1, retry_delay=lambda _m: 0
    )
    job = ProcessingJob(
        "up-9", "flaky", [S3ObjectRef("uploads", "uploads/main/up-9/a.txt")], "main"
    )
    with (
        ProgressHub(sqs, ProgressQueue(urls.progress), wait_time_seconds=1) as hub,
        hub.subscribe(job.channel) as watching,
        worker,
    ):
        send_batch(sqs, urls.processing, [("j", OutgoingMessage(job.to_json(), "up-9", "up-9-1"))])
        seen: list[ProgressEvent] = []
        status = [watching.snapshot]

        def until(state: UploadState) -> bool:
            # What a browser does: fold each event into the upload's status.
            while (event := watching.get(timeout=0.1)) is not None:
                seen.append(event)
                status[0] = fold_event(status[0], event)
            return status[0].state is state

        wait_until(lambda: until(UploadState.ERROR), timeout=30, what="the final error")
        wait_until(
            lambda: "Messages" in sqs.receive_message(QueueUrl=urls.dlq, VisibilityTimeout=0),
            timeout=30,
            what="the job in the DLQ",
        )
        failed_run = list(seen)
        broken["yes"] = False
        time.sleep(0.002)  # a new millisecond for the new run's first seq, at the very least
        report = redrive(sqs, urls.dlq, urls.processing)
        assert report.moved == 1
        wait_until(lambda: until(UploadState.COMPLETED), timeout=30, what="the redriven run")

    new_run = seen[len(failed_run) :]
    assert new_run[0].type.value == "start"
    assert new_run[-1].type.value == "done"
    assert min(e.seq or 0 for e in new_run) > max(e.seq or 0 for e in failed_run)
