"""No progress event lost to a partial batch failure (issue 20, item 3), on the moto server:
one entry of a batch fails once and is sent again after its successors; every subscriber
still gets all of them, the late one where the queue delivered it, and a ``done`` the queue
holds before it is held back by the hub until it came (a browser stops reading at
``done``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.support.faults import EntryFaults
from tests.support.streaming import fifo_queue, queue_counts, wait_until
from transflow import (
    ProgressHub,
    ProgressPublisher,
    ProgressQueue,
    ProgressTopic,
    Subscription,
    load_config,
)
from transflow._aws.retry import RetryPolicy
from transflow.ops.provision import ensure_topic

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

FAST = RetryPolicy(attempts=4, initial=0.001, maximum=0.01)


def second_entry_fails_once() -> Callable[[int, dict[str, Any]], tuple[str, bool] | None]:
    """Fails up-1's second event once, transiently (no sender fault): the batch sender
    sends it again in a later call."""
    seen: set[str] = set()

    def decide(_call: int, entry: dict[str, Any]) -> tuple[str, bool] | None:
        dedup = entry["MessageDeduplicationId"]
        if not dedup.startswith("up-1:") or dedup in seen:
            return None
        seen.add(dedup)
        return ("InternalError", False) if len(seen) == 2 else None

    return decide


def publish_five(publisher: ProgressPublisher) -> list[int]:
    """Five events of up-1 and five of up-2, sent together at the end of the block."""
    streams = [publisher.stream(upload, "main") for upload in ("up-1", "up-2")]
    sent = []
    with publisher.combined():
        for n in range(5):
            for stream in streams:
                sent.append(stream.emit("progress", step="transcode", percent=10 * n))
        for stream in streams:
            stream.close()
    return [e.seq for e in sent if e.seq is not None and e.upload_id == "up-1"]


def take(sub: Subscription, count: int) -> list[int | None]:
    got = [sub.get(timeout=10) for _ in range(count)]
    return [e.seq if e else None for e in got]


def test_an_entry_retried_after_a_partial_failure_reaches_every_subscriber(
    sqs: SQSClient,
) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    faults = EntryFaults(sqs, "SendMessageBatch", second_entry_fails_once())
    # One message per event (packed, a call carries one message of an upload: no overtaking).
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=False
    )
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
        exact = hub.subscribe("upload:main:up-1")
        seqs = publish_five(publisher)
        assert faults.injected == 1
        # Unpacked, a call carries several events of an upload (one call per event would
        # cost a job alone a call per event): the late one comes where the queue holds it.
        assert take(exact, 5) == [seqs[0], *seqs[2:], seqs[1]]
        wait_until(lambda: queue_counts(sqs, url) == (0, 0), what="every message deleted")
        stats = hub.stats()
    assert (stats.dispatched, stats.duplicates, stats.malformed) == (10, 0, 0)


def test_an_event_the_queue_holds_after_its_successors_reaches_every_subscriber(
    sqs: SQSClient,
) -> None:
    # What a publisher that let a retried entry be overtaken left in the queue (issue 20,
    # item 3): the hub still delivers the late one, where the queue holds it.
    url = fifo_queue(sqs, "progress.fifo")
    publisher = ProgressPublisher(ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST)
    stream = publisher.stream("up-1", "main")
    events = [stream.emit("progress", step="transcode", percent=10 * n) for n in range(4)]
    stream._buffer.clear()  # sent below, out of order, instead of by the stream
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
        exact = hub.subscribe("upload:main:up-1")
        branch = hub.subscribe("upload:main:*")
        late = [events[0], *events[2:], events[1]]
        for event in late:
            assert publisher.send([event], stream.attempt_token).ok
        expected = [e.seq for e in late]
        assert take(exact, 4) == expected
        assert take(branch, 4) == expected
        wait_until(lambda: queue_counts(sqs, url) == (0, 0), what="every message deleted")
        stats = hub.stats()
    assert (stats.dispatched, stats.duplicates, stats.malformed) == (4, 0, 0)


def test_an_entry_retried_after_a_partial_failure_reaches_every_fanout_instance(
    tmp_path: Any, aws: LocalAws
) -> None:
    path = tmp_path / "transflow.config.json"
    path.write_text(
        json.dumps({"project": "fan", "branch": "main", "sqs": {"progressFanout": "sns"}})
    )
    config = load_config(path, env={})
    sns = aws.sns()
    topic = ensure_topic(sns, config)
    faults = EntryFaults(sns, "PublishBatch", second_entry_fails_once())
    # One message per event (packed, a call carries one message of an upload: no overtaking).
    publisher = ProgressPublisher(
        ProgressTopic(topic), sns=sns, flush_after=60, policy=FAST, pack_events=False
    )
    hubs = [
        ProgressHub.from_config(
            config, sqs=aws.sqs(), sns=aws.sns(), progress=ProgressTopic(topic), wait_time_seconds=1
        ).start()
        for _ in range(2)
    ]
    try:
        subs = [hub.subscribe("upload:main:up-1") for hub in hubs]
        seqs = publish_five(publisher)
        assert faults.injected == 1
        for sub in subs:
            assert take(sub, 5) == [seqs[0], *seqs[2:], seqs[1]]
    finally:
        for hub in hubs:
            hub.stop(5)


def test_a_done_accepted_before_a_failed_entry_still_comes_last(sqs: SQSClient) -> None:
    """The queue holds ``done`` before the entry sent again; a browser stops at ``done``,
    so the hub holds it until the late entry arrives (``FanOut.terminal_hold``)."""
    url = fifo_queue(sqs, "progress-done.fifo")
    faults = EntryFaults(sqs, "SendMessageBatch", second_entry_fails_once())
    # One message per event (packed, a call carries one message of an upload: no overtaking).
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=False
    )
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
        sub = hub.subscribe("upload:main:up-1")
        with publisher.stream("up-1", "main") as stream:  # one batch: the block's end
            sent = [stream.emit("progress", step="transcode", percent=10 * n) for n in range(3)]
            sent.append(stream.emit("done"))
        assert faults.injected == 1
        got = [sub.get(timeout=10) for _ in range(4)]
        assert [(e.seq, e.type.value) if e else None for e in got] == [
            (sent[0].seq, "progress"),
            (sent[2].seq, "progress"),
            (sent[1].seq, "progress"),  # the late one, delivered where it arrived
            (sent[3].seq, "done"),  # held for it
        ]
        wait_until(lambda: queue_counts(sqs, url) == (0, 0), what="every message deleted")
        stats = hub.stats()
    assert (stats.dispatched, stats.duplicates, stats.terminals_held) == (4, 0, 1)
