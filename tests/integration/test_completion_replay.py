"""A job whose completion record was written is redelivered (issue 22 follow-up), on the
moto server: its message's delete failed, or the process died before it, before the
``done`` was sent or before the webhook was posted.

The redelivery does not run the job again; it sends the job's ``done`` again with the
identity the completion record keeps (the same ``seq`` and deduplication id), so a browser
that got it never gets a second one and one that did not gets it now; and it posts the
webhook again with the same ``X-Transflow-Delivery-Id``, so a webhook the crash cut off is
not lost and one that went can be recognised. A re-upload of the same content (another
message with the same job) keeps what it did before: a new ``done``, no webhook.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from bench.chaos import CallFaults

from tests.support.pipeline import lambda_record
from tests.support.streaming import fifo_queue, queue_counts, wait_until
from tests.support.webhooks import Receiver, webhook_receiver
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressPublisher,
    ProgressQueue,
    S3ObjectRef,
    SqsConfig,
    StepContext,
    TemplateRegistry,
    TransflowConfig,
    WebhookSender,
    ensure_queues,
)
from transflow._aws.poller import poller_client_config
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._wire.keys import status_key
from transflow.processing.status import AssemblyStatus, webhook_delivery_id
from transflow.processing.storage import S3JobStorage, read_status_record
from transflow.processing.webhooks import DELIVERY_ID_HEADER, verify
from transflow.processing.worker import make_worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws
    from transflow.ops.provision import QueueUrls

SECRET = "replay-secret"
FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
HOOKS = WebhookSender(
    timeout=5,
    attempts=2,
    initial_wait=0.001,
    max_wait=0.01,
    allow_http=True,  # the receiver listens on loopback over http
    allowed_networks=["127.0.0.0/8"],
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as state:
        yield state


@pytest.fixture
def urls(aws: LocalAws, s3: S3Client) -> QueueUrls:
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="outputs")
    return ensure_queues(aws.sqs(), TransflowConfig(project="rp", sqs=SqsConfig()))


def hooked_registry(runs: list[str], url: str) -> TemplateRegistry:
    registry = TemplateRegistry()

    @registry.template(
        "hooked", output_bucket="outputs", webhook_url=url, webhook_secret=SECRET
    ).step("nothing")
    def nothing(ctx: StepContext) -> None:
        runs.append(ctx.job.upload_id)

    return registry


def processor_for(
    registry: TemplateRegistry,
    aws: LocalAws,
    sqs: SQSClient,
    progress: str,
    *,
    packed: bool = False,
) -> JobProcessor:
    return JobProcessor(
        registry,
        s3_client=aws.s3(),
        sqs_client=sqs,
        upload_bucket="uploads",
        progress=ProgressQueue(progress),
        retry_policy=FAST,
        webhooks=HOOKS,
        max_receive_count=3,
        pack_events=packed,
        flush_after=600,  # a job's events go together, right before its message's delete
    )


def a_job(s3: S3Client, upload: str) -> ProcessingJob:
    key = f"uploads/main/{upload}/a.bin"
    s3.put_object(Bucket="uploads", Key=key, Body=b"x")
    return ProcessingJob(upload, "hooked", [S3ObjectRef("uploads", key)], "main")


def drain(sqs: SQSClient, url: str) -> list[ProgressEvent]:
    events = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            events.extend(ProgressEvent.all_from_json(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return events


def completed_record(s3: S3Client, upload: str) -> AssemblyStatus:
    record = read_status_record(s3, "outputs", status_key("main", upload))
    assert record is not None
    assert record.completed
    return record


@pytest.mark.parametrize("packed", [False, True], ids=["one-message-per-event", "packed"])
def test_a_redelivery_after_a_failed_delete_reaches_the_browser_with_no_second_done(
    aws: LocalAws, s3: S3Client, urls: QueueUrls, receiver: Receiver, packed: bool
) -> None:
    # One message per event, the done sent again has the first one's deduplication id.
    # Packed, the first went in one message with the job's other events, so the queue
    # takes the second; the hub drops it (a seq it dispatched).
    sqs = aws.sqs(poller_client_config(2))
    job = a_job(s3, "up-1")
    assert send_batch(
        sqs, urls.processing, [("j", OutgoingMessage(job.to_json(), "up-1", "up-1-job"))]
    ).ok
    runs: list[str] = []
    processor = processor_for(
        hooked_registry(runs, receiver.url), aws, sqs, urls.progress, packed=packed
    )
    first: list[str] = []  # the first delivery's receipt handle
    deleting = threading.local()

    def note_first(parsed: dict[str, Any], **_: Any) -> None:
        first.extend(m["ReceiptHandle"] for m in parsed.get("Messages", [])[:1] if not first)

    def note_deleted(params: dict[str, Any], **_: Any) -> None:
        deleting.first = any(e["ReceiptHandle"] in first[:1] for e in params["Entries"])

    def the_first_delete_fails(operation: str, _index: int) -> str | None:
        # An SQS outage for the first delivery's delete, every retry of it: the message
        # comes back after its visibility timeout.
        failing = operation == "DeleteMessageBatch" and getattr(deleting, "first", False)
        return "500" if failing else None

    sqs.meta.events.register("after-call.sqs.ReceiveMessage", note_first)
    sqs.meta.events.register("before-parameter-build.sqs.DeleteMessageBatch", note_deleted)
    faults = CallFaults(sqs, the_first_delete_fails)
    worker = make_worker(
        processor,
        sqs,
        urls.processing,
        concurrency=2,
        wait_time_seconds=1,
        visibility_timeout=2,
        delete_window=0.1,
    )
    with ProgressHub(aws.sqs(), ProgressQueue(urls.progress), wait_time_seconds=1) as hub:
        browser = hub.subscribe("upload:main:up-1")
        with worker:
            wait_until(lambda: worker.stats().deleted == 1, timeout=30, what="the redelivery")
            stats = worker.stats()
        # The redelivery's events were sent before its delete: once the hub took every
        # message from the queue, whatever it was to dispatch is in the subscription.
        wait_until(lambda: queue_counts(sqs, urls.progress) == (0, 0), what="the hub read all")
        got = [browser.get(timeout=5) for _ in range(browser.pending)]
        duplicates = hub.stats().duplicates
    assert faults.injected >= 1
    assert (stats.received, stats.succeeded, stats.delete_failures) == (2, 2, 1)
    assert runs == ["up-1"]  # the job ran once
    kinds = [(e.type.value, e.extra.get("replayed")) if e else None for e in got]
    assert kinds == [
        ("start", None),
        ("step:start", None),
        ("step:done", None),
        ("done", None),
    ], kinds
    record = completed_record(s3, "up-1")
    assert got[-1] is not None
    assert record.done_seq == got[-1].seq
    # Packed, the hub dropped it. One message per event, the queue did where it keeps
    # deduplication ids past a delete (AWS, five minutes), else the hub (moto forgets them).
    assert duplicates == 1 if packed else duplicates <= 1
    # The webhook went with the first delivery and again with the redelivery (which cannot
    # know the first went): one delivery id, which the receiver deduplicates on.
    assert len(receiver.received) == 2
    ids = {headers[DELIVERY_ID_HEADER] for _, headers in receiver.received}
    assert ids == {webhook_delivery_id(record)}
    assert receiver.received[0][0] == receiver.received[1][0]  # the same record


class Crash(BaseException):
    """The process dies (a Lambda timeout, an out-of-memory kill): no handler runs after."""


def test_a_crash_between_the_completion_record_and_the_webhook_loses_no_webhook(
    aws: LocalAws, s3: S3Client, urls: QueueUrls, receiver: Receiver, monkeypatch: Any
) -> None:
    sqs = aws.sqs()
    runs: list[str] = []
    processor = processor_for(hooked_registry(runs, receiver.url), aws, sqs, urls.progress)
    job = a_job(s3, "up-2")
    write = S3JobStorage.put_status_record
    crashed: list[str] = []

    def die_once_the_completion_is_stored(
        self: S3JobStorage, bucket: str, key: str, record: AssemblyStatus, *, if_match: str | None
    ) -> str:
        etag = write(self, bucket, key, record, if_match=if_match)
        if record.completed and not crashed:
            crashed.append(key)
            raise Crash
        return etag

    monkeypatch.setattr(S3JobStorage, "put_status_record", die_once_the_completion_is_stored)
    with pytest.raises(Crash):
        processor.handle({"Records": [lambda_record(job.to_json(), "m-2", "up-2", count=1)]})
    assert receiver.received == []  # it died before the POST
    assert [e.type.value for e in drain(sqs, urls.progress)] == ["start", "step:start", "step:done"]

    # Lambda returned no answer: SQS delivers the batch again.
    again = processor.handle({"Records": [lambda_record(job.to_json(), "m-2", "up-2", count=2)]})

    assert again == {"batchItemFailures": []}
    assert runs == ["up-2"]
    assert len(receiver.received) == 1, receiver.received
    record = completed_record(s3, "up-2")
    (done,) = drain(sqs, urls.progress)  # the first delivery never sent it
    assert (done.type.value, done.seq) == ("done", record.done_seq)
    body, headers = receiver.received[0]
    verify(SECRET, body, headers)
    assert AssemblyStatus.from_json(body) == record
    assert headers[DELIVERY_ID_HEADER] == webhook_delivery_id(record)


def test_the_same_job_in_another_message_is_answered_as_before(
    aws: LocalAws, s3: S3Client, urls: QueueUrls, receiver: Receiver
) -> None:
    # A bridge that sent the very same job again (a new message): not a redelivery. Its
    # browser may be waiting for a done of its own: a new one, and no second webhook.
    sqs = aws.sqs()
    runs: list[str] = []
    processor = processor_for(hooked_registry(runs, receiver.url), aws, sqs, urls.progress)
    job = a_job(s3, "up-3")
    for message_id in ("m-3", "m-3-again"):
        answer = processor.handle({"Records": [lambda_record(job.to_json(), message_id, "up-3")]})
        assert answer == {"batchItemFailures": []}
    assert runs == ["up-3"]
    done = [e for e in drain(sqs, urls.progress) if e.type.value == "done"]
    assert [e.extra.get("replayed") for e in done] == [None, True]
    assert (done[1].seq or 0) > (done[0].seq or 0)
    assert len(receiver.received) == 1


def test_a_reserved_seq_goes_to_its_event_or_to_the_one_that_comes_instead(
    sqs: SQSClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = fifo_queue(sqs, "reserve.fifo")
    # One message per event: a packed message's deduplication id is its first event's, so
    # there the hub, not the queue, drops an event sent again (the test above, packed).
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=600, policy=FAST, pack_events=False
    )
    with publisher.stream("up-9", "main") as stream:
        start = stream.emit("start")
        reserved = stream.reserve_seq()
        done = stream.emit("done", seq=reserved)
    assert (start.seq, done.seq) == (reserved - 1, reserved)

    with publisher.stream("up-8", "main") as stream:
        reserved = stream.reserve_seq()
        # The completion write failed: an error comes instead of the done, and takes the
        # seq, so the hub sees no hole before it.
        error = stream.emit("error", message="the completion record was not written")
        assert error.seq == reserved
        # Taken: a late emit with it is numbered after, never a second event with one seq.
        late = stream.emit("done", seq=reserved)
    assert late.seq == reserved + 1
    assert "the reserved seq" in caplog.text

    # An event sent again under its identity (another stream resumed at its seq, with its
    # attempt token) is one the queue drops.
    with publisher.stream("up-9", "main", attempt_token="1", next_seq=done.seq) as again:
        assert again.emit("done").seq == done.seq
    events = drain(sqs, url)
    # FIFO orders within a group only.
    assert [e.type.value for e in events if e.upload_id == "up-9"] == ["start", "done"]
    assert [e.type.value for e in events if e.upload_id == "up-8"] == ["error", "done"]


def test_a_delivery_that_finds_the_same_message_completed_first_sends_what_it_did_not(
    aws: LocalAws, s3: S3Client, urls: QueueUrls, receiver: Receiver, monkeypatch: Any
) -> None:
    # Two deliveries of one message at once (the first's lease ran out): the second
    # completes the job and dies before its done and webhook; the first, finishing later,
    # finds the job completed by the same message (a duplicate) and sends them.
    sqs = aws.sqs()
    registry = TemplateRegistry()
    template = registry.template(
        "hooked", output_bucket="outputs", webhook_url=receiver.url, webhook_secret=SECRET
    )
    processor = processor_for(registry, aws, sqs, urls.progress)
    job = a_job(s3, "up-4")

    @template.step("work")
    def work(ctx: StepContext) -> None:
        if ctx.attempt == 1:
            with pytest.raises(Crash):
                processor.run_job(job, attempt=2, message_id="m-4")

    write = S3JobStorage.put_status_record

    def the_second_dies_once_its_completion_is_stored(
        self: S3JobStorage, bucket: str, key: str, record: AssemblyStatus, *, if_match: str | None
    ) -> str:
        etag = write(self, bucket, key, record, if_match=if_match)
        if record.completed and record.attempt == 2:
            raise Crash
        return etag

    monkeypatch.setattr(
        S3JobStorage, "put_status_record", the_second_dies_once_its_completion_is_stored
    )
    answer = processor.run_job(job, attempt=1, message_id="m-4")

    record = completed_record(s3, "up-4")
    assert (answer, record.attempt) == (record, 2)  # completed once, by the second
    done = [e for e in drain(sqs, urls.progress) if e.type.value == "done"]
    assert [(e.seq, e.extra.get("replayed")) for e in done] == [(record.done_seq, True)]
    assert [h[DELIVERY_ID_HEADER] for _, h in receiver.received] == [webhook_delivery_id(record)]
