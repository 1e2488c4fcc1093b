"""The progress publisher on a real FIFO queue: batching, ordering, deduplication."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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
        stream.emit("step:start", step="a")  # flushes: 2 events, 1 call
        for n in range(25):  # a full batch goes out as soon as ten are waiting
            stream.emit("progress", step="a", percent=n)
        stream.emit("step:done", step="a")
        stream.emit("done")
    events = drain_events(sqs, url)
    assert [e.seq for e in events] == list(range(100_000_000, 100_000_029))
    assert [e.percent for e in events[2:27]] == list(range(25))
    assert events[-1].type.value == "done"
    assert requests.count("SendMessageBatch") == 4  # 2 | 10 | 10 | 7
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
    # The first call fails every other entry (as SQS does under load); the retry sends them.
    faults = EntryFaults(
        sqs,
        "SendMessageBatch",
        lambda call, entry: (
            ("InternalError", False) if call == 0 and int(entry["Id"][1:]) % 2 else None
        ),
    )
    # One message per event, so the call has six entries to fail (packed: one message).
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=False
    )
    with publisher.stream("up-1", "main") as stream:
        for n in range(6):
            stream.emit("progress", percent=n * 10)
    assert faults.injected == 3
    seqs = sorted(e.seq for e in drain_events(sqs, url) if e.seq is not None)
    assert seqs == list(range(seqs[0], seqs[0] + 6))


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


def test_a_combined_queue_sends_whole_batches_and_keeps_the_rest(sqs: SQSClient) -> None:
    """Three jobs' flushes join the combined queue 2, 4, 2, 4, 2, 4 events at a time: at
    twelve waiting, ten go and two wait for the next jobs' events, so eighteen events take
    two SendMessageBatch calls (10 | 8), not three (10 | 2 | 6). One message per event here:
    packed, the three uploads are three messages of one call at the end."""
    url = progress_queue(sqs)
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=False
    )
    with count_requests(sqs) as requests, publisher.combined():
        streams = []
        for n in range(3):
            with publisher.stream(f"up-{n}", "main") as stream:
                stream.emit("start", template_id="t")
                stream.emit("step:start", step="a")  # joins 2
                stream.emit("progress", step="a", percent=100)
                stream.emit("output", step="a", name="m.json", key=f"k/{n}")
                stream.emit("step:done", step="a")
                stream.emit("done")  # joins 4
            streams.append(stream)
    assert requests.count("SendMessageBatch") == 2
    events = drain_events(sqs, url)
    for n in range(3):
        mine = [e for e in events if e.upload_id == f"up-{n}"]
        assert [e.type.value for e in mine] == [
            "start",
            "step:start",
            "progress",
            "output",
            "step:done",
            "done",
        ]
        seqs = [e.seq or 0 for e in mine]
        assert seqs == sorted(seqs)
    assert [(s.sent, s.failed) for s in streams] == [(6, 0)] * 3
