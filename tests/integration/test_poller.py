"""QueuePoller against the moto server: ordering, failures, heartbeats, faults, stop."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from bench.chaos import CallFaults

from tests.support.faults import EntryFaults
from tests.support.streaming import FAST, fifo_queue, queue_counts, wait_until
from transflow import (
    QueuePoller,
    ReceivedMessage,
    current_delivery,
    release_immediately,
)
from transflow._aws.metering import count_requests
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow.cli.local import LocalAws, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def send(sqs: SQSClient, url: str, bodies: list[tuple[str, str]]) -> None:
    """(group, body) pairs; the body is its own dedup id."""
    fifo = url.endswith(".fifo")
    result = send_batch(
        sqs,
        url,
        [
            (b, OutgoingMessage(b, group_id=g if fifo else None, dedup_id=b if fifo else None))
            for g, b in bodies
        ],
        policy=FAST,
    )
    assert result.ok


class Recorder:
    """A handler that records what ran, and any message run twice at the same time."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.lock = threading.Lock()
        self.done: list[str] = []
        self.attempts: Counter[str] = Counter()
        self.running: set[str] = set()
        self.overlaps: list[str] = []
        self.fail = fail or set()

    def __call__(self, message: ReceivedMessage) -> None:
        with self.lock:
            if message.body in self.running:
                self.overlaps.append(message.body)
            self.running.add(message.body)
            self.attempts[message.body] += 1
        try:
            if message.body in self.fail:
                raise RuntimeError(f"fails: {message.body}")
            with self.lock:
                self.done.append(message.body)
        finally:
            with self.lock:
                self.running.discard(message.body)


def test_runs_every_message_once_in_group_order_and_deletes_in_batches(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "jobs.fifo")
    bodies = [(f"g{i % 5}", f"g{i % 5}-{i:03d}") for i in range(60)]
    send(sqs, url, bodies)
    handler = Recorder()
    poller = QueuePoller(sqs, url, handler, concurrency=4, max_in_flight=20, wait_time_seconds=1)
    with count_requests(sqs) as counter, poller:
        wait_until(lambda: poller.stats().deleted == 60, what="60 deletes")
    assert sorted(handler.done) == sorted(b for _, b in bodies)
    for group in range(5):
        mine = [b for b in handler.done if b.startswith(f"g{group}-")]
        assert mine == sorted(mine), "a group's messages ran out of order"
    assert handler.overlaps == []
    assert queue_counts(sqs, url) == (0, 0)
    assert counter.count("DeleteMessage") == 0
    assert counter.count("SendMessage") + counter.count("SendMessageBatch") == 0
    assert counter.count("DeleteMessageBatch") < 60  # deletes are batched
    stats = poller.stats()
    assert stats.state == "stopped"
    assert (stats.received, stats.succeeded, stats.failed) == (60, 60, 0)
    assert stats.last_poll_at is not None


def test_a_failure_skips_the_rest_of_its_group_and_returns_through_visibility(
    sqs: SQSClient,
) -> None:
    url = sqs.create_queue(
        QueueName="jobs.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "30",
        },
    )["QueueUrl"]
    # a1 fails once, then succeeds: a2 and a3 must not run before a1 succeeded.
    send(sqs, url, [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2")])
    handler = Recorder(fail={"a1"})
    order: list[str] = []

    def flaky(message: ReceivedMessage) -> None:
        order.append(message.body)
        if message.body == "a1" and message.receive_count > 1:
            handler.fail.clear()
        handler(message)

    poller = QueuePoller(
        sqs,
        url,
        flaky,
        concurrency=2,
        max_in_flight=10,
        wait_time_seconds=1,
        retry_delay=release_immediately,
    )
    with count_requests(sqs) as counter, poller:
        wait_until(lambda: poller.stats().deleted == 5, what="all five done")
    assert [b for b in order if b.startswith("a")] == ["a1", "a1", "a2", "a3"]
    assert [b for b in order if b.startswith("b")] == ["b1", "b2"]
    assert poller.stats().failed == 1
    assert counter.count("SendMessage") + counter.count("SendMessageBatch") == 0  # no re-send
    assert counter.count("ChangeMessageVisibilityBatch") >= 1


def test_no_message_lost_or_run_twice_under_injected_faults(aws: LocalAws) -> None:
    # No botocore retries: only the poller's and sqs_batch's own are at work.
    sqs = aws.sqs(local_client_config(retries={"mode": "standard", "total_max_attempts": 1}))
    url = fifo_queue(sqs, "faulty.fifo")
    bodies = [(f"u{i % 10}", f"u{i % 10}-{i:03d}") for i in range(120)]
    send(sqs, url, bodies)
    kinds = ["throttle", "500", "drop"]

    def decide(_operation: str, index: int) -> str | None:
        return kinds[index % 3] if index % 5 == 2 else None

    calls = CallFaults(sqs, decide)
    entries = EntryFaults(
        sqs,
        "DeleteMessageBatch",
        lambda call, entry: (
            ("InternalError", False) if call % 3 == 0 and entry["Id"] == "e0" else None
        ),
    )
    handler = Recorder()
    poller = QueuePoller(
        sqs, url, handler, concurrency=4, max_in_flight=20, wait_time_seconds=1, policy=FAST
    )
    with poller:
        wait_until(lambda: len(set(handler.done)) == 120, 60, "every message handled")
        # Count with a client of its own: the faults above are for the poller, not the test.
        counter = aws.sqs()
        wait_until(lambda: queue_counts(counter, url) == (0, 0), 30, "an empty queue")
    assert calls.injected > 5
    assert entries.injected > 0
    assert poller.stats().receive_errors > 0  # the loop survived them
    assert handler.overlaps == []
    assert max(handler.attempts.values()) == 1, "a message was handled twice"


def test_graceful_stop_releases_messages_not_started(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "stop.fifo")
    send(sqs, url, [("one", f"m{i}") for i in range(8)])
    started = threading.Event()
    go = threading.Event()

    def slow(message: ReceivedMessage) -> None:
        started.set()
        assert go.wait(30)

    poller = QueuePoller(
        sqs, url, slow, concurrency=1, max_in_flight=10, wait_time_seconds=1, drain_timeout=30
    ).start()
    assert started.wait(20)
    wait_until(lambda: poller.stats().held == 8, what="all eight held")
    poller.request_stop()
    wait_until(lambda: poller.stats().released == 7, what="seven released")
    assert poller.state == "stopping"  # the started one is still running
    go.set()
    assert poller.stop()
    assert poller.stats().deleted == 1
    # The stop line adds up: the seven were released without running, not failed.
    stats = poller.stats()
    assert (stats.succeeded, stats.failed, stats.unrun) == (1, 0, 7)
    assert stats.received == stats.succeeded + stats.failed + stats.timed_out + stats.unrun
    assert str(stats).startswith(
        "8 received: 1 succeeded, 0 failed (released for a retry), 0 timed out, 7 released unrun;"
    )
    # Nothing is left invisible: the seven are receivable at once, in order.
    assert queue_counts(sqs, url) == (7, 0)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == [f"m{i}" for i in range(1, 8)]


def test_a_handler_slower_than_the_visibility_timeout_is_not_delivered_twice(
    sqs: SQSClient,
) -> None:
    url = sqs.create_queue(QueueName="slow", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    send(sqs, url, [("", "long-job")])
    running = threading.Event()
    release = threading.Event()
    handler = Recorder()

    def slow(message: ReceivedMessage) -> None:
        running.set()
        assert release.wait(30)
        handler(message)

    poller = QueuePoller(
        sqs,
        url,
        slow,
        concurrency=1,
        wait_time_seconds=1,
        visibility_timeout=2,
        heartbeat_interval=0.5,
    ).start()
    try:
        assert running.wait(20)
        # Another consumer keeps asking for twice the visibility timeout: it gets nothing.
        probe = LocalProbe(sqs, url)
        probe.poll_for(4.5)
        assert probe.received == []
        assert poller.stats().extended >= 3
    finally:
        release.set()
        poller.stop()
    assert handler.done == ["long-job"]
    assert queue_counts(sqs, url) == (0, 0)


class LocalProbe:
    """A competing consumer that long-polls for a while and records what it gets."""

    def __init__(self, sqs: SQSClient, url: str) -> None:
        self.sqs, self.url, self.received = sqs, url, list[str]()

    def poll_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = self.sqs.receive_message(
                QueueUrl=self.url, WaitTimeSeconds=1, VisibilityTimeout=0
            ).get("Messages", [])
            self.received.extend(m["Body"] for m in got)


def test_a_handler_timeout_cancels_the_job_and_returns_its_message(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "timeout.fifo")
    send(sqs, url, [("g", "stuck"), ("g", "next")])
    seen: list[tuple[str, int, bool]] = []
    lock = threading.Lock()

    def handler(message: ReceivedMessage) -> None:
        delivery = current_delivery()
        assert delivery is not None
        assert delivery.message == message
        if message.body == "stuck" and message.receive_count == 1:
            assert delivery.remaining_time() is not None
            cancelled = delivery.cancelled.wait(20)  # cooperates: returns when cancelled
            with lock:
                seen.append((message.body, message.receive_count, cancelled))
            return  # its result is discarded: it was cancelled
        with lock:
            seen.append((message.body, message.receive_count, delivery.is_cancelled))

    poller = QueuePoller(
        sqs,
        url,
        handler,
        concurrency=2,
        max_in_flight=10,
        wait_time_seconds=1,
        handler_timeout=0.5,
        retry_delay=release_immediately,
    )
    with poller:
        wait_until(lambda: poller.stats().deleted == 2, what="both done after the retry")
    assert seen[0] == ("stuck", 1, True)
    # Redelivered after the timeout, then the rest of the group, in order.
    assert [s[0] for s in seen[1:]] == ["stuck", "next"]
    assert poller.stats().timed_out == 1


def test_the_loop_survives_a_missing_queue(aws: LocalAws) -> None:
    sqs = aws.sqs(local_client_config(retries={"mode": "standard", "total_max_attempts": 1}))
    url = sqs.create_queue(QueueName="later")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    handler = Recorder()
    poller = QueuePoller(sqs, url, handler, wait_time_seconds=1, error_backoff_max=0.2).start()
    try:
        wait_until(lambda: poller.stats().receive_errors >= 2, what="failing receives")
        sqs.create_queue(QueueName="later")
        send(sqs, url, [("", "finally")])
        wait_until(lambda: handler.done == ["finally"], what="the message after recovery")
    finally:
        assert poller.stop()
