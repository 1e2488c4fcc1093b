"""SNS's limits in fan-out mode, on the embedded endpoint: 256 KiB per message and per
PublishBatch call (all entries together), whatever ``sqs.maxMessageBytes`` allows the queues.

moto accepts a PublishBatch over the limit (LocalStack and AWS answer
``BatchRequestTooLong``), so these tests measure each request as it leaves the client, and
inject the refusal with a botocore hook (:class:`tests.support.faults.BatchTooLong`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.faults import BatchTooLong, EntryFault, EntryFaults
from tests.support.pipeline import await_events
from transflow import (
    ProgressDestination,
    ProgressEvent,
    ProgressEventTooLargeError,
    ProgressPublisher,
    ProgressTopic,
    load_config,
)
from transflow._aws.metering import count_requests
from transflow._aws.retry import RetryPolicy
from transflow._aws.sns_batch import publish_batch
from transflow._aws.sqs_batch import OutgoingMessage
from transflow.ops.provision import ensure_topic
from transflow.processing.progress import progress_dedup_id
from transflow.streaming.instances import InstanceQueue

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws
    from transflow.config import TransflowConfig

FAST = RetryPolicy(attempts=2, initial=0.01, maximum=0.02)
SNS_LIMIT = 262_144
ONE_MIB = 1_048_576


@pytest.fixture
def sns(aws: LocalAws) -> SNSClient:
    return aws.sns()


@pytest.fixture
def config(tmp_path: Any) -> TransflowConfig:
    path = tmp_path / "transflow.config.json"
    path.write_text(
        json.dumps(
            {
                "project": "lim",
                "branch": "main",
                "sqs": {"progressFanout": "sns", "maxMessageBytes": ONE_MIB},
            }
        )
    )
    return load_config(path, env={})


@pytest.fixture
def listener(sqs: SQSClient, sns: SNSClient, config: TransflowConfig) -> Iterator[str]:
    """A queue subscribed to the topic, as a hub instance's is: what was really published."""
    queue = InstanceQueue(sqs, sns, ensure_topic(sns, config), config.instance_queue_prefix)
    queue.open()
    assert queue.url is not None
    try:
        yield queue.url
    finally:
        queue.close()


def big_events(count: int, size: int, uploads: int = 1) -> list[ProgressEvent]:
    """``count`` events, of ``uploads`` uploads in turn (``up-big``, ``up-big1``, ...)."""
    return [
        ProgressEvent.create(
            "progress",
            upload_id="up-big" + (str(n % uploads) if uploads > 1 else ""),
            branch="main",
            seq=n,
            extra={"blob": "x" * size},
        )
        for n in range(1, count + 1)
    ]


def batch_sizes(sns: SNSClient) -> list[list[int]]:
    """The bytes SNS counts (message and attributes) of each entry of each PublishBatch."""
    seen: list[list[int]] = []

    def measure(params: dict[str, Any], **_: Any) -> None:
        seen.append(
            [
                len(entry["Message"].encode())
                + sum(
                    len(name.encode()) + len(b"String") + len(value["StringValue"].encode())
                    for name, value in entry.get("MessageAttributes", {}).items()
                )
                for entry in params["PublishBatchRequestEntries"]
            ]
        )

    sns.meta.events.register("before-parameter-build.sns.PublishBatch", measure)
    return seen


def test_publish_batches_stay_within_sns_limits_when_the_queues_allow_1_mib(
    config: TransflowConfig, sqs: SQSClient, sns: SNSClient, listener: str
) -> None:
    destination = ProgressDestination.from_config(config, topic_arn=ensure_topic(sns, config))
    assert config.sqs.max_message_bytes == ONE_MIB
    assert destination.max_batch_bytes == SNS_LIMIT
    publisher = ProgressPublisher(destination, sns=sns, policy=FAST)
    sizes = batch_sizes(sns)
    with count_requests(sns) as requests:
        result = publisher.send(big_events(10, 40_000), "1")
    assert result.ok, result.failed
    assert requests.count("PublishBatch") == len(sizes) >= 2
    assert all(sum(batch) <= SNS_LIMIT and len(batch) <= 10 for batch in sizes), sizes
    assert [e.seq for e in await_events(sqs, listener, 10)] == list(range(1, 11))


def test_a_batch_refused_as_too_long_is_split_and_nothing_is_lost(
    config: TransflowConfig, sqs: SQSClient, sns: SNSClient, listener: str
) -> None:
    # An endpoint whose limit is below ours: any call of more than three entries is refused.
    fault = BatchTooLong(sns, "PublishBatch", lambda entries: len(entries) > 3)
    publisher = ProgressPublisher(ProgressTopic(ensure_topic(sns, config)), sns=sns, policy=FAST)
    events = big_events(10, 100, uploads=10)  # ten uploads: one call could take all ten
    result = publisher.send(events, "1")
    assert fault.refused >= 1
    assert result.ok, result.failed
    assert sorted(result.succeeded) == sorted(f"{e.upload_id}:{e.seq}" for e in events)
    assert sorted(e.seq or 0 for e in await_events(sqs, listener, 10)) == list(range(1, 11))


def test_an_entry_failed_in_the_middle_of_an_upload_is_never_overtaken(
    config: TransflowConfig, sqs: SQSClient, sns: SNSClient, listener: str
) -> None:
    # PublishBatch fails one entry without sender fault and accepts the rest of the call:
    # the retried entry must still reach the queues before its upload's later events.
    failed: list[str] = []

    def once(_call: int, entry: dict[str, Any]) -> EntryFault | None:
        if entry["MessageDeduplicationId"].endswith(":1:5") and not failed:
            failed.append(entry["Id"])
            return ("InternalError", False)
        return None

    faults = EntryFaults(sns, "PublishBatch", once)
    events = big_events(12, 10, uploads=3)
    # publish_batch's default (the publisher's with pack_events=True; unpacked, it lets an
    # upload's events share a call and the hub keeps a terminal event last).
    messages = [
        (
            str(e.seq),
            OutgoingMessage(
                e.to_json(),
                group_id=e.upload_id,
                dedup_id=progress_dedup_id(e.upload_id, "1", e.seq or 0),
            ),
        )
        for e in events
    ]
    result = publish_batch(sns, ensure_topic(sns, config), messages, policy=FAST)
    assert faults.injected == 1
    assert result.ok, result.failed
    arrived = await_events(sqs, listener, 12)
    assert sorted(e.seq or 0 for e in arrived) == list(range(1, 13))  # each once
    for upload in {e.upload_id for e in events}:
        assert [e.seq for e in arrived if e.upload_id == upload] == [
            e.seq for e in events if e.upload_id == upload
        ]


def test_entries_refused_even_alone_are_reported_failed_logged_and_counted(
    config: TransflowConfig, sns: SNSClient, caplog: pytest.LogCaptureFixture
) -> None:
    BatchTooLong(sns, "PublishBatch", lambda entries: True)
    publisher = ProgressPublisher(ProgressTopic(ensure_topic(sns, config)), sns=sns, policy=FAST)
    with caplog.at_level(logging.ERROR), publisher.stream("up-big", "main") as stream:
        for _ in range(4):
            stream.emit("progress", percent=1)
    assert (stream.sent, stream.failed) == (0, 4)
    assert "4 of 4 events were not sent" in caplog.text
    assert "BatchRequestTooLong" in caplog.text


def test_an_event_over_the_topic_limit_is_refused_at_emit_and_the_others_go(
    config: TransflowConfig, sqs: SQSClient, sns: SNSClient, listener: str
) -> None:
    destination = ProgressDestination.from_config(config, topic_arn=ensure_topic(sns, config))
    publisher = ProgressPublisher(destination, sns=sns, policy=FAST)
    with publisher.stream("up-big", "main") as stream:
        stream.emit("start")
        with pytest.raises(ProgressEventTooLargeError, match="262144-byte limit"):
            stream.emit("progress", extra={"blob": "x" * 300_000})
        stream.emit("done")
    assert (stream.sent, stream.refused) == (2, 1)
    events = await_events(sqs, listener, 2)
    assert [e.type.value for e in events] == ["start", "done"]
    assert events[1].seq == (events[0].seq or 0) + 1  # the refused event took no seq
