"""The worker handles what it receives as a batch (issue 22): one progress queue across its
jobs, sent before their messages are deleted, in DeleteMessageBatch calls; and a crash
between a job's completion and that send loses nothing and doubles nothing."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from tests.support.streaming import wait_until
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressQueue,
    S3ObjectRef,
    SqsConfig,
    StepContext,
    TemplateRegistry,
    TransflowConfig,
    ensure_queues,
)
from transflow._aws.metering import count_requests
from transflow._aws.poller import poller_client_config
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._wire.keys import status_key
from transflow.processing.storage import read_status_record
from transflow.processing.worker import make_worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws
    from transflow.ops.provision import QueueUrls


@pytest.fixture
def urls(aws: LocalAws, s3: S3Client) -> QueueUrls:
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="outputs")
    config = TransflowConfig(project="wb", sqs=SqsConfig(max_receive_count=3))
    return ensure_queues(aws.sqs(), config)


def noop_registry(runs: list[str]) -> TemplateRegistry:
    registry = TemplateRegistry()

    @registry.template("noop", output_bucket="outputs").step("nothing")
    def nothing(ctx: StepContext) -> None:
        runs.append(ctx.job.upload_id)

    return registry


def queue_jobs(sqs: SQSClient, s3: S3Client, url: str, count: int) -> list[str]:
    uploads = [f"up-{n}" for n in range(count)]
    messages = []
    for upload in uploads:
        key = f"uploads/main/{upload}/a.bin"
        s3.put_object(Bucket="uploads", Key=key, Body=b"x")
        job = ProcessingJob(upload, "noop", [S3ObjectRef("uploads", key)], "main")
        messages.append((upload, OutgoingMessage(job.to_json(), upload, f"{upload}-1")))
    assert send_batch(sqs, url, messages).ok
    return uploads


def drain_progress(sqs: SQSClient, url: str) -> list[ProgressEvent]:
    events = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            events.extend(ProgressEvent.all_from_json(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return events


def processor_for(
    registry: TemplateRegistry, sqs: SQSClient, s3: S3Client, urls: QueueUrls, **kw: float
) -> JobProcessor:
    return JobProcessor(
        registry,
        s3_client=s3,
        sqs_client=sqs,
        upload_bucket="uploads",
        progress=ProgressQueue(urls.progress),
        **kw,  # type: ignore[arg-type]
    )


def test_ten_noop_jobs_share_progress_sends_and_deletes(
    aws: LocalAws, s3: S3Client, urls: QueueUrls
) -> None:
    sqs = aws.sqs(poller_client_config(10))
    uploads = queue_jobs(sqs, s3, urls.processing, 10)
    runs: list[str] = []
    processor = processor_for(noop_registry(runs), sqs, s3, urls, flush_after=30)
    worker = make_worker(processor, sqs, urls.processing, concurrency=4, wait_time_seconds=1)
    with count_requests(sqs, s3) as requests, worker:
        wait_until(lambda: worker.stats().deleted == 10, timeout=30, what="10 jobs deleted")
    assert sorted(runs) == sorted(uploads)
    events = drain_progress(sqs, urls.progress)
    for upload in uploads:
        kinds = [e.type.value for e in events if e.upload_id == upload]
        assert kinds == ["start", "step:start", "step:done", "done"]
        seqs = [e.seq or 0 for e in events if e.upload_id == upload]
        assert seqs == sorted(seqs)
    sends, deletes = requests.count("SendMessageBatch"), requests.count("DeleteMessageBatch")
    receives, puts = requests.count("ReceiveMessage"), requests.count("PutObject", "s3")
    print(
        f"per job: {sends / 10} SendMessageBatch, {deletes / 10} DeleteMessageBatch, "
        f"{receives / 10} ReceiveMessage (empty ones included), {puts / 10} PutObject, "
        f"{requests.total('s3') / 10} S3 in all"
    )
    # Before (a flush per job inside the handler): 20 sends, 9 deletes in this test.
    # Now 40 events of 10 uploads take calls of up to ten uploads each: 4 when all ten
    # jobs end together, a few more when they end apart (at most one send per delete).
    assert sends <= 8, sends
    assert deletes <= 4, deletes
    assert puts == 20  # the status record, executing and completed: not this change's
    assert worker.stats().delete_failures == 0


def test_a_crash_between_completion_and_the_progress_send_loses_and_doubles_nothing(
    aws: LocalAws, s3: S3Client, urls: QueueUrls
) -> None:
    # The worker "dies" right before its first progress send and delete: the events it had
    # queued are gone with it (cleared), its message is neither deleted nor kept invisible.
    # The next delivery finds the completed record: the job does not run again, and its one
    # `done` event goes out then, before that delivery's message is deleted.
    sqs = aws.sqs(poller_client_config(2))
    (upload,) = queue_jobs(sqs, s3, urls.processing, 1)
    runs: list[str] = []
    processor = processor_for(noop_registry(runs), sqs, s3, urls, flush_after=600)
    worker = make_worker(
        processor,
        sqs,
        urls.processing,
        concurrency=2,
        wait_time_seconds=1,
        visibility_timeout=2,
        delete_window=0.1,
    )
    crashed = threading.Event()
    flush = worker.before_delete
    assert flush is not None

    def crash_once() -> None:
        if not crashed.is_set():
            crashed.set()
            with processor.publisher._pending_lock:
                lost = processor.publisher._pending
                assert lost is not None
                assert [e.type.value for e, _ in lost][-1] == "done"
                lost.clear()  # what the process held in memory dies with it
            raise RuntimeError("killed")
        flush()

    worker.before_delete = crash_once
    with worker:
        wait_until(lambda: worker.stats().deleted == 1, timeout=30, what="the redelivery deleted")
        stats = worker.stats()
    assert crashed.is_set()
    assert (stats.received, stats.succeeded, stats.delete_failures) == (2, 2, 1)
    assert runs == [upload]  # the job ran once
    record = read_status_record(s3, "outputs", status_key("main", upload))
    assert record is not None
    assert record.completed
    assert record.attempt == 1  # completed once, by the first delivery
    events = drain_progress(sqs, urls.progress)
    assert [e.type.value for e in events] == ["done"]  # one done: none lost, none doubled
    assert events[0].extra.get("replayed") is True
    for url in (urls.processing, urls.dlq):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0"
        assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
