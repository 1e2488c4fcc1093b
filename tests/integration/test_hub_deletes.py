"""The hub's deletes: gathered ten to a call within ``delete_window`` while the queue is
busy, at once when it is not, never lost, and the queue left empty (nothing comes back to
be delivered twice)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tests.support.streaming import fifo_queue, publish, queue_counts, wait_until
from transflow import ConfigError, ProgressEvent, ProgressHub, ProgressQueue, upload_channel
from transflow._aws.metering import count_requests

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.timezone.utc)
WAVES = 5
PER_WAVE = 2


def done(upload: str) -> ProgressEvent:
    return ProgressEvent.create("done", upload_id=upload, branch="main", timestamp=T0, seq=1)


def step(upload: str) -> ProgressEvent:
    """An event of an upload still running: more of its group may follow."""
    return ProgressEvent.create(
        "step:start", upload_id=upload, branch="main", timestamp=T0, seq=1, step="a"
    )


def run_waves(
    sqs: SQSClient,
    delete_window: float,
    *,
    wait_deleted: bool,
    event: Callable[[str], ProgressEvent] = step,
    visibility: int = 30,
) -> tuple[ProgressHub, int]:
    """Ten events of ten uploads, published in waves, each wave once the hub dispatched the
    one before (separate receives). Returns the stopped hub and its DeleteMessageBatch calls."""
    url = fifo_queue(sqs, "progress.fifo", visibility=visibility)
    hub = ProgressHub(
        sqs,
        ProgressQueue(url),
        wait_time_seconds=1,
        delete_window=delete_window,
        visibility_timeout=visibility,
    )
    uploads = [f"up-{n}" for n in range(WAVES * PER_WAVE)]
    subs = {u: hub.subscribe(upload_channel("main", u)) for u in uploads}
    with count_requests(sqs) as counter, hub:
        for wave in range(WAVES):
            publish(sqs, url, [event(u) for u in uploads[wave * PER_WAVE : (wave + 1) * PER_WAVE]])
            sent = (wave + 1) * PER_WAVE
            wait_until(lambda: hub.stats().dispatched >= sent, 20, "the wave dispatched")  # noqa: B023
            if wait_deleted:
                wait_until(lambda: hub.poller.stats().deleted >= sent, 20, "the wave deleted")  # noqa: B023
        wait_until(lambda: hub.poller.stats().deleted == len(uploads), 20, "every delete")
        calls = counter.count("DeleteMessageBatch")
    for upload, sub in subs.items():
        got = sub.get(timeout=5)
        assert got is not None
        assert (got.upload_id, got.type.value) == (upload, event(upload).type.value)
    assert queue_counts(sqs, url) == (0, 0)  # nothing left to come back
    assert hub.stats().duplicates == 0
    return hub, calls


def test_a_busy_queue_is_deleted_ten_to_a_call(sqs: SQSClient) -> None:
    """A backlog: every receive comes back full, and the deletes of thirty events (thirty
    uploads) go in three full calls, whichever handler finishes when."""
    url = fifo_queue(sqs, "progress.fifo", visibility=30)
    uploads = [f"up-{n:02d}" for n in range(30)]
    publish(sqs, url, [done(u) for u in uploads])
    hub = ProgressHub(
        sqs, ProgressQueue(url), wait_time_seconds=1, concurrency=4, delete_window=10.0
    )
    subs = {u: hub.subscribe(upload_channel("main", u)) for u in uploads}
    with count_requests(sqs) as counter, hub:
        wait_until(lambda: hub.poller.stats().deleted == len(uploads), 20, "every delete")
        calls = counter.count("DeleteMessageBatch")
        stats = hub.poller.stats()
    assert calls == 3
    assert (stats.deleted, stats.delete_calls, stats.delete_failures) == (30, 3, 0)
    for upload, sub in subs.items():
        got = sub.get(timeout=5)
        assert got is not None
        assert got.upload_id == upload
    assert queue_counts(sqs, url) == (0, 0)
    assert hub.stats().duplicates == 0


def test_a_thin_queue_is_deleted_at_once_whatever_the_window(sqs: SQSClient) -> None:
    """Receives that come back short, of uploads still running: each wave is deleted before
    the next is published (long before the ten-second window), so no upload's next events
    are held back."""
    hub, calls = run_waves(sqs, delete_window=10.0, wait_deleted=True)
    assert calls >= WAVES
    assert hub.poller.stats().delete_calls == calls


def test_no_window_deletes_each_receive_at_once(sqs: SQSClient) -> None:
    hub, calls = run_waves(sqs, delete_window=0.0, wait_deleted=True)
    assert calls >= WAVES
    assert hub.poller.stats().delete_calls == calls


def test_ended_uploads_are_deleted_together_across_thin_receives(sqs: SQSClient) -> None:
    """Receives that come back short, each of uploads that have ended (``done``): nothing
    of theirs can be held back, so their deletes wait for each other within the window and
    ten go in one call, not one call per receive (five before)."""
    hub, calls = run_waves(sqs, delete_window=25.0, wait_deleted=False, event=done, visibility=90)
    assert calls == 1
    assert hub.poller.stats().delete_calls == 1


def test_a_running_upload_is_deleted_at_once_with_the_ended_ones_waiting(sqs: SQSClient) -> None:
    """An ended upload's delete waits; then an event of an upload still running (or an
    error after which the job is retried) comes: its delete goes at once, long before the
    window, so its next events are not held back, and the waiting one goes with it."""
    url = fifo_queue(sqs, "progress.fifo", visibility=90)
    hub = ProgressHub(
        sqs, ProgressQueue(url), wait_time_seconds=1, delete_window=25.0, visibility_timeout=90
    )
    retried = ProgressEvent.create(
        "error",
        upload_id="up-retry",
        branch="main",
        timestamp=T0,
        seq=1,
        message="boom",
        extra={"retrying": True},
    )
    with hub:
        publish(sqs, url, [done("up-ended")])
        wait_until(lambda: hub.stats().dispatched == 1, 20, "the done dispatched")
        assert hub.poller.stats().deleted == 0  # lingering within its window
        publish(sqs, url, [step("up-running")])
        wait_until(lambda: hub.poller.stats().deleted == 2, 20, "both deleted")
        publish(sqs, url, [retried])
        wait_until(lambda: hub.poller.stats().deleted == 3, 20, "the retried error deleted")
    assert queue_counts(sqs, url) == (0, 0)
    assert hub.stats().duplicates == 0


def test_a_lone_event_is_deleted_once_its_window_passed(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1, delete_window=0.2) as hub:
        sub = hub.subscribe(upload_channel("main", "alone"))
        publish(sqs, url, [done("alone")])
        assert sub.get(timeout=20) is not None
        wait_until(lambda: hub.poller.stats().deleted == 1, 20, "the delete")
        assert queue_counts(sqs, url) == (0, 0)


def test_a_window_past_a_third_of_the_visibility_timeout_is_refused(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    with pytest.raises(ConfigError, match="delete_window"):
        ProgressHub(sqs, ProgressQueue(url), visibility_timeout=30, delete_window=10.5)
    with pytest.raises(ConfigError, match="delete_window"):
        ProgressHub(sqs, ProgressQueue(url), delete_window=-1)


def test_a_pause_after_a_short_receive_gathers_the_next_events(sqs: SQSClient) -> None:
    """One event comes alone; nine more are sent one by one while the hub pauses: they
    arrive in one receive and one delete, not one receive per send. (Uploads still
    running: an ended upload's delete would also wait for the nine's.)"""
    url = fifo_queue(sqs, "progress.fifo")
    uploads = [f"up-{n}" for n in range(10)]
    hub = ProgressHub(
        sqs, ProgressQueue(url), wait_time_seconds=1, receive_pause=5.0, delete_window=6.0
    )
    subs = {u: hub.subscribe(upload_channel("main", u)) for u in uploads}
    with count_requests(sqs) as counter, hub:
        publish(sqs, url, [step(uploads[0])])
        assert subs[uploads[0]].get(timeout=20) is not None
        for upload in uploads[1:]:
            publish(sqs, url, [step(upload)])
        for upload in uploads[1:]:
            assert subs[upload].get(timeout=20) is not None
        wait_until(lambda: hub.poller.stats().deleted == len(uploads), 20, "every delete")
    # Counted once the hub stopped: its last long poll came back, empty.
    with_messages = counter.count("ReceiveMessage") - counter.empty_receives
    # The first event's receive, then the nine's (without the pause: one per send).
    assert with_messages == 2
    # The first receive's delete waits with the pause; the nine's go in one call.
    assert hub.poller.stats().delete_calls == 2
    assert queue_counts(sqs, url) == (0, 0)


def test_a_pause_out_of_range_is_refused(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    for pause in (-0.1, 5.5):
        with pytest.raises(ConfigError, match="receive_pause"):
            ProgressHub(sqs, ProgressQueue(url), receive_pause=pause)
