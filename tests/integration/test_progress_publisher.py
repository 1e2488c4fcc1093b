"""The progress publisher on a real FIFO queue: batching, ordering, deduplication."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.support.faults import EntryFaults
from tests.support.pipeline import drain_events
from transflow import ProgressPublisher, ProgressQueue, count_requests
from transflow._aws.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

FAST = RetryPolicy(attempts=4, initial=0.001, maximum=0.01)


def progress_queue(sqs: SQSClient) -> str:
    return sqs.create_queue(QueueName="p.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]


def test_events_are_numbered_batched_and_ordered(sqs: SQSClient) -> None:
    url = progress_queue(sqs)
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, clock=lambda: 100.0
    )
    with count_requests(sqs) as requests, publisher.stream("up-1", "main") as stream:
        stream.emit("start", template_id="t")
        stream.emit("step:start", step="a")  # flushes: 2 events
        for n in range(25):  # a full batch goes out as soon as ten are waiting
            stream.emit("progress", step="a", percent=n)
        stream.emit("step:done", step="a")
        stream.emit("done")
    events = drain_events(sqs, url)
    assert [e.seq for e in events] == list(range(100_000_000, 100_000_029))
    assert [e.percent for e in events[2:27]] == list(range(25))
    assert events[-1].type.value == "done"
    # One upload's events take a call each: two in one call could be split by a partial
    # failure (transflow._aws.sqs_batch). Many uploads share calls (test_processor.py).
    assert requests.count("SendMessageBatch") == 29
    assert stream.sent == 29


def test_a_retried_send_is_deduplicated_but_a_new_attempt_is_not(sqs: SQSClient) -> None:
    url = progress_queue(sqs)
    starts = iter([100.0, 160.0])
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, clock=lambda: next(starts)
    )
    first = publisher.stream("up-1", "main", attempt=1)
    events = [first.emit("start"), first.emit("error", message="boom")]
    # The same send again (as after a lost response) is dropped by the queue.
    publisher.send(events, first.attempt_token)
    rerun = publisher.stream("up-1", "main", attempt=2)
    rerun.emit("start")
    rerun.emit("done")
    received = drain_events(sqs, url)
    assert [(e.type.value, e.seq) for e in received] == [
        ("start", 100_000_000),
        ("error", 100_000_001),
        ("start", 160_000_000),
        ("done", 160_000_001),
    ]
    assert [e.event_id for e in received][2] == "up-1:160000000"


def test_failed_entries_are_retried_without_duplicates(sqs: SQSClient) -> None:
    url = progress_queue(sqs)
    # The first try of each of up-1's events fails (as SQS may under load) while up-2's
    # go: the retries send them, each once, and before up-1's later events.
    tried: set[str] = set()

    def up1_once(_call: int, entry: dict[str, Any]) -> tuple[str, bool] | None:
        dedup = entry["MessageDeduplicationId"]
        if dedup.startswith("up-1:") and dedup not in tried:
            tried.add(dedup)
            return ("InternalError", False)
        return None

    faults = EntryFaults(sqs, "SendMessageBatch", up1_once)
    publisher = ProgressPublisher(ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST)
    streams = [publisher.stream(upload, "main") for upload in ("up-1", "up-2")]
    with publisher.combined():
        for n in range(3):
            for stream in streams:
                stream.emit("progress", percent=n * 10)
        for n in range(3):  # so that each of up-1's tries shares its call with up-2's
            streams[1].emit("progress", percent=70 + n * 10)
        for stream in streams:
            stream.close()
    assert faults.injected == 3
    events = drain_events(sqs, url)
    for upload, count in (("up-1", 3), ("up-2", 6)):
        seqs = [e.seq for e in events if e.upload_id == upload and e.seq is not None]
        assert seqs == list(range(seqs[0], seqs[0] + count))


def test_a_quiet_step_still_sends_after_the_delay(sqs: SQSClient) -> None:
    url = progress_queue(sqs)
    publisher = ProgressPublisher(ProgressQueue(url), sqs=sqs, flush_after=0.05, policy=FAST)
    stream = publisher.stream("up-1", "main")
    stream.emit("progress", step="encode", percent=42)
    deadline = time.monotonic() + 10
    received: list[MessageTypeDef] = []
    while not received and time.monotonic() < deadline:
        received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert len(received) == 1
    assert '"percent":42' in received[0]["Body"]
    stream.close()


def test_overlapping_combined_blocks_lose_no_event(sqs: SQSClient) -> None:
    """Two handler calls on one processor at once (a worker's threads, concurrent
    invocations in one process) each open a combined block on the shared publisher: the
    second must not drop the events the first has queued (it did: 1 of 20 bench uploads
    at 10 clients never saw its events)."""
    url = progress_queue(sqs)
    publisher = ProgressPublisher(ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST)
    first = publisher.combined()
    first.__enter__()
    with publisher.stream("up-1", "main") as one:
        one.emit("start", template_id="t")
        one.emit("step:start", step="a")  # flushes into the combined queue
    with publisher.combined(), publisher.stream("up-2", "main") as two:
        two.emit("start", template_id="t")
        two.emit("done")
    first.__exit__(None, None, None)
    events = drain_events(sqs, url)
    assert sorted((e.upload_id, e.type.value) for e in events) == [
        ("up-1", "start"),
        ("up-1", "step:start"),
        ("up-2", "done"),
        ("up-2", "start"),
    ]
    assert (one.sent, one.failed, two.sent, two.failed) == (2, 0, 2, 0)
