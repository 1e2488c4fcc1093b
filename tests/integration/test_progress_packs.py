"""Packed progress messages (``pack_events``) on the moto server: one message per upload
per send, read by the hub event by event, in order, with nothing lost or doubled."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.support.faults import EntryFaults
from tests.support.streaming import fifo_queue, publish, queue_counts, wait_until
from transflow import (
    ProgressEvent,
    ProgressHub,
    ProgressPublisher,
    ProgressQueue,
    ProgressTopic,
    Subscription,
    count_requests,
    load_config,
    upload_channel,
)
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._wire.packs import pack_body
from transflow.ops.provision import ensure_topic

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

FAST = RetryPolicy(attempts=4, initial=0.001, maximum=0.01)
TYPES = ["start", "step:start", "progress", "output", "step:done", "done"]


def run_job(publisher: ProgressPublisher, upload: str, *, padding: str = "") -> list[int]:
    with publisher.stream(upload, "main") as stream:
        sent = [
            stream.emit("start", template_id="t"),
            stream.emit("step:start", step="a"),
            stream.emit("progress", step="a", percent=100, message=padding),
            stream.emit("output", step="a", name="m.json", key=f"k/{upload}"),
            stream.emit("step:done", step="a"),
            stream.emit("done"),
        ]
    return [e.seq or 0 for e in sent]


def received(sub: Subscription, count: int) -> list[ProgressEvent]:
    got: list[ProgressEvent] = []
    for _ in range(count):
        event = sub.get(timeout=20)
        assert event is not None, f"only {len(got)} of {count} events arrived"
        got.append(event)
    return got


def test_a_batchs_uploads_go_as_one_message_each(sqs: SQSClient) -> None:
    """Three jobs of a Lambda batch, six events each: one SendMessageBatch of three
    messages (not eighteen), each a pack of its upload's events in order, deduplicated by
    its first event's id."""
    url = fifo_queue(sqs, "progress.fifo")
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=True
    )
    with count_requests(sqs) as requests, publisher.combined():
        seqs = {f"up-{n}": run_job(publisher, f"up-{n}") for n in range(3)}
    assert requests.count("SendMessageBatch") == 1
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    assert len(messages) == 3
    for message in messages:
        events = [ProgressEvent.from_dict(item) for item in json.loads(message["Body"])]
        upload = events[0].upload_id
        assert [e.type.value for e in events] == TYPES
        assert [e.seq for e in events] == seqs[upload]
        assert message["Attributes"]["MessageGroupId"] == upload
        assert message["Attributes"]["MessageDeduplicationId"] == f"{upload}:1:{seqs[upload][0]}"


def test_packs_keep_to_the_message_size_limit(sqs: SQSClient) -> None:
    """Events of about 450 bytes with a 1 KiB limit: two to a pack, never over it."""
    url = fifo_queue(sqs, "progress.fifo")
    publisher = ProgressPublisher(
        ProgressQueue(url, max_message_bytes=1024),
        sqs=sqs,
        flush_after=60,
        policy=FAST,
        pack_events=True,
    )
    with publisher.combined():
        for n in range(2):
            run_job(publisher, f"up-{n}", padding="x" * 300)
    bodies: list[str] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in batch]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    assert all(len(body.encode()) <= 1024 for body in bodies)
    per_upload: dict[str, list[str]] = {}
    for body in bodies:
        items = json.loads(body)
        for item in items if isinstance(items, list) else [items]:
            per_upload.setdefault(item["uploadId"], []).append(item["type"])
    assert per_upload == {"up-0": TYPES, "up-1": TYPES}
    assert len(bodies) < 12


def test_a_failed_pack_fails_each_of_its_events(sqs: SQSClient) -> None:
    """A pack the queue refuses for good: each of its events counts as not sent (logged),
    the other upload's pack goes."""
    url = fifo_queue(sqs, "progress.fifo")
    faults = EntryFaults(
        sqs,
        "SendMessageBatch",
        lambda _call, entry: (
            ("InvalidParameterValue", True) if '"uploadId":"up-0"' in entry["MessageBody"] else None
        ),
    )
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=True
    )
    with publisher.combined():
        streams = [publisher.stream(f"up-{n}", "main") for n in range(2)]
        for stream in streams:
            with stream:
                stream.emit("start", template_id="t")
                stream.emit("done")
    assert faults.injected >= 1
    assert [(s.sent, s.failed) for s in streams] == [(0, 2), (2, 0)]


def test_the_hub_reads_packs_and_single_events_in_order(sqs: SQSClient) -> None:
    """A packing processor's events reach subscribers one by one and in order, next to a
    single-event message; a malformed event in a pack costs only itself; every message is
    deleted once."""
    url = fifo_queue(sqs, "progress.fifo")
    publisher = ProgressPublisher(
        ProgressQueue(url), sqs=sqs, flush_after=60, policy=FAST, pack_events=True
    )
    hub = ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1)
    subs = {u: hub.subscribe(upload_channel("main", u)) for u in ("up-0", "up-1", "up-2", "up-3")}
    with hub:
        with publisher.combined():
            seqs = {u: run_job(publisher, u) for u in ("up-0", "up-1")}
        single = ProgressEvent.create("done", upload_id="up-2", branch="main", seq=7)
        publish(sqs, url, [single])
        good = [
            ProgressEvent.create("start", upload_id="up-3", branch="main", seq=1),
            ProgressEvent.create("done", upload_id="up-3", branch="main", seq=3),
        ]
        body = pack_body([good[0].to_json(), '{"type":"nonsense"}', good[1].to_json()])
        result = send_batch(
            sqs, url, [("p", OutgoingMessage(body, group_id="up-3", dedup_id="up-3:1:1"))]
        )
        assert result.ok
        for upload in ("up-0", "up-1"):
            events = received(subs[upload], 6)
            assert [e.type.value for e in events] == TYPES
            assert [e.seq for e in events] == seqs[upload]
        assert [e.seq for e in received(subs["up-2"], 1)] == [7]
        assert [e.seq for e in received(subs["up-3"], 2)] == [1, 3]
        wait_until(lambda: hub.poller.stats().deleted == 4, 20, "every message deleted")
    stats = hub.stats()
    assert (stats.malformed, stats.duplicates) == (1, 0)
    assert queue_counts(sqs, url) == (0, 0)


def test_packs_reach_every_fanout_instance(tmp_path: Any, aws: LocalAws) -> None:
    """Fan-out mode: a pack per upload goes through the SNS FIFO topic (one PublishBatch)
    to every hub's instance queue, and each hub's subscriber gets the events in order."""
    path = tmp_path / "transflow.config.json"
    path.write_text(
        json.dumps({"project": "fan", "branch": "main", "sqs": {"progressFanout": "sns"}})
    )
    config = load_config(path, env={})
    sns = aws.sns()
    topic = ensure_topic(sns, config)
    publisher = ProgressPublisher(
        ProgressTopic(topic), sns=sns, flush_after=60, policy=FAST, pack_events=True
    )
    hubs = [
        ProgressHub.from_config(
            config, sqs=aws.sqs(), sns=aws.sns(), progress=ProgressTopic(topic), wait_time_seconds=1
        ).start()
        for _ in range(2)
    ]
    try:
        subs = [
            {u: hub.subscribe(upload_channel("main", u)) for u in ("up-0", "up-1")} for hub in hubs
        ]
        with count_requests(sns) as requests, publisher.combined():
            seqs = {u: run_job(publisher, u) for u in ("up-0", "up-1")}
        assert requests.count("PublishBatch") == 1
        for mine in subs:
            for upload, sub in mine.items():
                events = received(sub, 6)
                assert [e.type.value for e in events] == TYPES
                assert [e.seq for e in events] == seqs[upload]
    finally:
        for hub in hubs:
            hub.stop(5)
