"""ProgressHub on the moto server: fan-out, order, resume, lagging subscribers, authorize."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.streaming import fast_moto_clock, fifo_queue, publish, queue_counts, wait_until
from transflow import (
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    SubscriberLaggedError,
    Subscription,
    SubscriptionClosedError,
    UploadState,
    branch_channel,
    upload_channel,
)
from transflow._aws.metering import count_requests

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)


def event(branch: str, upload: str, seq: int, **fields: Any) -> ProgressEvent:
    kind = fields.pop("type", "progress")
    if kind == "progress":
        fields.setdefault("step", "transcode")
        fields.setdefault("percent", seq % 101)
    return ProgressEvent.create(
        kind, upload_id=upload, branch=branch, timestamp=T0, seq=seq, **fields
    )


def drain(sub: Subscription) -> list[ProgressEvent]:
    out: list[ProgressEvent] = []
    try:
        while (got := sub.get(timeout=0)) is not None:
            out.append(got)
    except SubscriptionClosedError:
        pass  # closed when its hub stopped: what it buffered was all read above
    return out


CHUNK = 200
# Fan-out at scale (thousands of events, hundreds of subscribers) is bench/fanout.py's job
# (`make bench`); here, enough interleaved groups and subscribers to show order, no loss, no
# duplicates and batched deletes, in a few seconds.
UPLOADS = 20
EVENTS_PER_UPLOAD = 30
SUBSCRIBERS_PER_UPLOAD = 3
BRANCH_SUBSCRIBERS = 4


def test_many_subscribers_on_interleaved_channels_get_every_event_once_in_order(
    sqs: SQSClient,
) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    total = UPLOADS * EVENTS_PER_UPLOAD
    per_branch = total // 2
    seqs = list(range(1, EVENTS_PER_UPLOAD + 1))
    uploads = [(("main", "dev")[i % 2], f"up-{i:02d}") for i in range(UPLOADS)]
    hub = ProgressHub(
        sqs, ProgressQueue(url), buffer_size=total, wait_time_seconds=1, concurrency=4
    )
    subs: list[tuple[str, Subscription]] = []
    for i in range(UPLOADS * SUBSCRIBERS_PER_UPLOAD):
        branch, upload = uploads[i % UPLOADS]
        subs.append((upload, hub.subscribe(upload_channel(branch, upload))))
    branch_subs = [
        hub.subscribe(branch_channel(("main", "dev")[i % 2])) for i in range(BRANCH_SUBSCRIBERS)
    ]
    # Round-robin over uploads, so groups interleave on the queue as they do in production.
    events = [event(b, u, seq) for seq in seqs for b, u in uploads]
    with fast_moto_clock(), hub, count_requests(sqs) as counter:
        # Publish in steps and let the hub keep up: moto scans the whole queue on every
        # send and receive, so a deep queue would make this test quadratic (SQS is not).
        for start in range(0, total, CHUNK):
            publish(sqs, url, events[start : start + CHUNK])
            behind = start - CHUNK
            wait_until(lambda: hub.stats().dispatched >= behind, 60, "the hub to keep up")  # noqa: B023
        wait_until(lambda: hub.stats().dispatched == total, 60, f"{total} events dispatched")
    for upload, sub in subs:
        got = drain(sub)
        assert [e.upload_id for e in got] == [upload] * EVENTS_PER_UPLOAD
        assert [e.seq for e in got] == seqs, f"order or loss on {upload}"
    for sub in branch_subs:
        got = drain(sub)
        branch = sub.channel.split(":")[1]
        assert len(got) == per_branch
        assert {e.branch for e in got} == {branch}
        for _, upload in (u for u in uploads if u[0] == branch):
            assert [e.seq for e in got if e.upload_id == upload] == seqs
    stats = hub.stats()
    assert (stats.duplicates, stats.malformed, stats.lagged) == (0, 0, 0)
    assert stats.delivered == EVENTS_PER_UPLOAD * len(subs) + per_branch * BRANCH_SUBSCRIBERS
    assert queue_counts(sqs, url) == (0, 0)
    receives = counter.count("ReceiveMessage")
    deletes = counter.count("DeleteMessageBatch")
    print(f"\n{total} events: {receives} ReceiveMessage, {deletes} DeleteMessageBatch")
    assert deletes <= total // 10 * 2  # batched, never one call per message
    assert counter.count("DeleteMessage") == 0


def test_snapshot_first_then_live_and_resume_by_last_event_id(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    channel = upload_channel("main", "abc")
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
        first = hub.subscribe(channel)
        assert first.snapshot.state is UploadState.QUEUED
        publish(
            sqs,
            url,
            [
                event("main", "abc", 1, type="start", template_id="audio"),
                event("main", "abc", 2, type="step:start", step="transcode"),
                *[event("main", "abc", s) for s in range(3, 10)],
            ],
        )
        got = [first.get(timeout=10) for _ in range(9)]
        assert [e.seq for e in got if e] == list(range(1, 10))
        # The client saw up to seq 4, then dropped: it resumes with Last-Event-ID "abc:4".
        resumed = hub.subscribe(channel, last_event_id="abc:4")
        assert [e.seq for e in drain(resumed)] == [5, 6, 7, 8, 9]
        snap = resumed.snapshot
        assert snap.state is UploadState.PROCESSING
        assert snap.last_event_id == "abc:9"
        assert snap.template_id == "audio"
        assert [s.name for s in snap.steps] == ["transcode"]
        # A late joiner without an id gets the snapshot, then only what comes next.
        late = hub.subscribe(channel)
        assert drain(late) == []
        publish(sqs, url, [event("main", "abc", 10, type="done")])
        assert late.get(timeout=10) == event("main", "abc", 10, type="done")
        assert hub.subscribe(channel).snapshot.state is UploadState.COMPLETED
        # Branch resume: by arrival order across the branch's uploads.
        publish(sqs, url, [event("main", "xyz", 1), event("main", "abc", 11)])
        wait_until(lambda: hub.stats().dispatched == 12, what="12 dispatched")
        branch = hub.subscribe(branch_channel("main"), last_event_id="abc:9")
        assert [e.event_id for e in drain(branch)] == ["abc:10", "xyz:1", "abc:11"]
        assert {s.upload_id for s in branch.snapshots} == {"abc", "xyz"}
    assert [e.seq for e in drain(first)] == [10, 11]  # what it had buffered is still read
    with pytest.raises(SubscriptionClosedError, match="hub stopped"):
        first.get(timeout=1)


def test_a_slow_subscriber_is_cut_off_without_delaying_the_others(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    channel = upload_channel("main", "big")
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
        slow = hub.subscribe(channel, buffer_size=5)
        fast = hub.subscribe(channel, buffer_size=100)
        fast_got: list[ProgressEvent] = []

        def read_fast() -> None:
            fast_got.extend(fast)

        reader = threading.Thread(target=read_fast)
        reader.start()
        publish(sqs, url, [event("main", "big", 1)])
        assert slow.get(timeout=10) is not None  # the slow one reads one event, then stalls
        publish(sqs, url, [event("main", "big", s) for s in range(2, 61)])
        wait_until(lambda: len(fast_got) == 60, what="the fast subscriber to get all 60")
        with pytest.raises(SubscriberLaggedError, match="reconnect"):
            slow.get(timeout=1)
        assert hub.stats().lagged == 1
        assert [e.seq for e in fast_got] == list(range(1, 61))
        # It reconnects where it was: the replay buffer has the rest.
        again = hub.subscribe(channel, last_event_id="big:1", buffer_size=100)
        assert [e.seq for e in drain(again)] == list(range(2, 61))
        fast.close()
        reader.join(timeout=10)
        assert not reader.is_alive()


def test_duplicates_and_malformed_messages(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "progress.fifo")
    channel = upload_channel("main", "d")
    with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
        sub = hub.subscribe(channel)
        publish(sqs, url, [event("main", "d", 1), event("main", "d", 2)])
        # The same event sent again after the dedup window (a different dedup id).
        sqs.send_message(
            QueueUrl=url,
            MessageBody=event("main", "d", 2).to_json(),
            MessageGroupId="d",
            MessageDeduplicationId="d:2:again",
        )
        sqs.send_message(
            QueueUrl=url, MessageBody="{not json", MessageGroupId="d", MessageDeduplicationId="x"
        )
        publish(sqs, url, [event("main", "d", 3)])
        wait_until(lambda: hub.stats().dispatched == 3, what="three dispatched")
        wait_until(lambda: queue_counts(sqs, url) == (0, 0), what="everything deleted")
        assert [e.seq for e in drain(sub)] == [1, 2, 3]
        stats = hub.stats()
        assert (stats.duplicates, stats.malformed) == (1, 1)
