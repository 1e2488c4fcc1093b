"""SNS PublishBatch that loses nothing: every entry of every response checked, retried with
the one :class:`~transflow._aws.retry.RetryPolicy`.

The same planning and retry loop as :mod:`transflow._aws.sqs_batch` (throttling and server
faults retried, a call refused as ``BatchRequestTooLong`` made smaller, the rest reported,
at most one entry of a message group per call so that a failed entry is never overtaken),
with SNS's own limits: at most 10 entries and 256 KiB per message AND per call, all entries
together, whatever the subscribed queues would take (a batch planned with an SQS queue's
1 MiB limit is refused whole by SNS). An entry that a response lists neither as
successful nor as failed counts as failed and is retried: moto answers a batch with both
lists empty when one of the topic's queues was deleted before it was unsubscribed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import (
    BatchResult,
    EntryFailure,
    OutgoingMessage,
    _no_group,
    _run,
    message_size,
    split_too_large,
    string_attributes,
)
from transflow._wire.limits import SNS_MAX_BATCH_BYTES, SNS_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

__all__ = ["publish_batch"]


def _group_of(message: OutgoingMessage) -> str | None:
    return message.group_id


def _publish_entry(message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"Message": message.body}
    if message.group_id is not None:
        entry["MessageGroupId"] = message.group_id
    if message.dedup_id is not None:
        # Always explicit: a FIFO topic's content-based deduplication is not what we want
        # (two equal events of one job are two events) and moto does not implement it.
        entry["MessageDeduplicationId"] = message.dedup_id
    if message.string_attributes:
        entry["MessageAttributes"] = string_attributes(message)
    return entry


def publish_batch(
    sns: SNSClient,
    topic_arn: str,
    messages: Iterable[tuple[str, OutgoingMessage]],
    *,
    max_bytes: int = SNS_MAX_MESSAGE_BYTES,
    max_batch_bytes: int = SNS_MAX_BATCH_BYTES,
    policy: RetryPolicy | None = None,
    group_order: bool = True,
) -> BatchResult:
    """Publish ``(key, message)`` pairs to ``topic_arn`` with PublishBatch, in order, in as
    few calls as the limits allow: 10 entries and ``max_batch_bytes`` per call, both capped
    at SNS's 256 KiB. A message larger than ``max_bytes`` (capped the same) fails alone with
    code ``MessageTooLarge``; the others are still published. ``group_order``: as
    :func:`~transflow._aws.sqs_batch.send_batch`'s."""
    policy = policy or RetryPolicy()
    max_bytes = min(max_bytes, SNS_MAX_MESSAGE_BYTES)
    items, too_large = split_too_large(list(messages), max_bytes)
    failed = tuple(
        EntryFailure(key, "MessageTooLarge", f"{size} bytes is over {max_bytes}", True)
        for key, size in too_large
    )

    def call(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        return sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)  # type: ignore[arg-type]

    sent = _run(
        "PublishBatch",
        items,
        call,
        _publish_entry,
        policy,
        group_of=_group_of if group_order else _no_group,
        size_of=message_size,
        max_bytes=min(max_batch_bytes, SNS_MAX_BATCH_BYTES),
    )
    return BatchResult(failed=failed).merge(sent)
