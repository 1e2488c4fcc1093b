"""SQS batch calls that lose nothing: SendMessageBatch, DeleteMessageBatch and
ChangeMessageVisibilityBatch, with every entry of every response checked.

Callers give each item a key of their own; this module assigns the wire entry ids (valid,
unique per call), splits items into calls of at most 10 entries and the configured byte
limit, retries what AWS says may be retried (throttling, server errors, dropped connections,
entries failed without sender fault, unless their code says no retry can help, such as a
stale receipt handle) with exponential backoff and jitter, splits a call refused whole as
``BatchRequestTooLong`` in halves, and reports the rest. It never raises for a failed entry:
the caller decides what a failure means.

The decisions (planning, classification) are plain functions; the I/O is the three
``*_batch`` functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from transflow._aws.retry import (
    RetryPolicy,
    is_retryable_entry,
    is_retryable_error,
)
from transflow._aws.s3 import error_code
from transflow._wire.limits import MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, MAX_VISIBILITY_TIMEOUT

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "BatchResult",
    "EntryFailure",
    "OutgoingMessage",
    "change_visibility_batch",
    "delete_batch",
    "is_retryable_entry",
    "message_size",
    "plan_batches",
    "send_batch",
]

log = logging.getLogger(__name__)


@attrs.frozen
class OutgoingMessage:
    """One message to send. FIFO queues need ``group_id``; a deterministic ``dedup_id``
    makes a retried send harmless."""

    body: str
    group_id: str | None = None
    dedup_id: str | None = None
    delay_seconds: int | None = None
    string_attributes: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class EntryFailure:
    """An item that did not succeed, with AWS's code and message (or ours)."""

    key: str
    code: str
    message: str
    sender_fault: bool


@attrs.frozen
class BatchResult:
    """What happened to every item: each key is in exactly one of the two."""

    succeeded: tuple[str, ...] = ()
    failed: tuple[EntryFailure, ...] = ()
    calls: int = 0

    @property
    def ok(self) -> bool:
        """Whether every item succeeded."""
        return not self.failed

    def merge(self, other: BatchResult) -> BatchResult:
        """Both results together."""
        return BatchResult(
            self.succeeded + other.succeeded, self.failed + other.failed, self.calls + other.calls
        )


BATCH_TOO_LONG_CODES = frozenset(
    {"BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong"}
)
"""A whole batch call refused for its total size (SNS's and SQS's code). Nothing in it was
sent, and each half may well pass: such a call is split, never given up whole."""


class _TryAgain(Exception):
    """Some entries may succeed if sent again."""


# -- decisions ----------------------------------------------------------------------------


def message_size(message: OutgoingMessage) -> int:
    """Bytes SQS counts against its limits: the UTF-8 body plus each attribute's name,
    type and value."""
    size = len(message.body.encode("utf-8", "surrogatepass"))
    for name, value in message.string_attributes.items():
        size += len(name.encode()) + len(b"String") + len(value.encode("utf-8", "surrogatepass"))
    return size


T = TypeVar("T")


def plan_batches(
    items: Sequence[tuple[str, T]],
    *,
    size_of: Callable[[T], int],
    max_bytes: int,
    max_entries: int = MAX_BATCH_ENTRIES,
    max_batch_bytes: int | None = None,
) -> tuple[list[list[tuple[str, T]]], list[tuple[str, int]]]:
    """Split items, in order, into calls of at most ``max_entries`` and ``max_batch_bytes``
    in total (``max_bytes`` when None: SQS's one limit for both). An item over ``max_bytes``
    (or over the batch limit, which it could never fit) is returned apart with its size, as
    too large to send at all."""
    per_call = max_bytes if max_batch_bytes is None else max_batch_bytes
    per_item = min(max_bytes, per_call)
    batches: list[list[tuple[str, T]]] = []
    too_large: list[tuple[str, int]] = []
    current: list[tuple[str, T]] = []
    current_bytes = 0
    for key, item in items:
        size = size_of(item)
        if size > per_item:
            too_large.append((key, size))
            continue
        if current and (len(current) == max_entries or current_bytes + size > per_call):
            batches.append(current)
            current, current_bytes = [], 0
        current.append((key, item))
        current_bytes += size
    if current:
        batches.append(current)
    return batches, too_large


# -- I/O ----------------------------------------------------------------------------------


@attrs.define
class _Progress(Generic[T]):
    """The state of one batch operation across its attempts."""

    pending: dict[str, T]
    succeeded: list[str] = attrs.field(factory=list)
    failed: list[EntryFailure] = attrs.field(factory=list)
    last_error: dict[str, EntryFailure] = attrs.field(factory=dict)
    calls: int = 0

    def absorb(self, response: Mapping[str, Any], wire_ids: Mapping[str, str]) -> None:
        for ok in response.get("Successful", []):
            key = wire_ids[ok["Id"]]
            self.succeeded.append(key)
            self.pending.pop(key, None)
        for bad in response.get("Failed", []):
            key = wire_ids[bad["Id"]]
            failure = EntryFailure(
                key, bad.get("Code", ""), bad.get("Message", ""), bad["SenderFault"]
            )
            if is_retryable_entry(failure.code, failure.sender_fault, failure.message):
                self.last_error[key] = failure
            else:
                self.failed.append(failure)
                self.pending.pop(key, None)
        # An entry in neither list is a broken response; treat it as retryable.
        for key in self.pending:
            self.last_error.setdefault(
                key, EntryFailure(key, "Missing", "not in the response", False)
            )


def _run(
    operation: str,
    items: Sequence[tuple[str, T]],
    call: Callable[[list[dict[str, Any]]], Mapping[str, Any]],
    to_entry: Callable[[T], dict[str, Any]],
    policy: RetryPolicy,
) -> BatchResult:
    """One batch call's worth of items, retried until each succeeded or failed for good."""
    state = _Progress(dict(items))

    def attempt() -> None:
        keys = list(state.pending)
        wire_ids = {f"e{i}": key for i, key in enumerate(keys)}
        entries = [{"Id": wid, **to_entry(state.pending[key])} for wid, key in wire_ids.items()]
        state.calls += 1
        try:
            response = call(entries)
        except Exception as exc:
            if not is_retryable_error(exc):
                raise
            log.warning("%s failed (%s); retrying %d entries", operation, exc, len(keys))
            for key in keys:
                state.last_error[key] = EntryFailure(key, type(exc).__name__, str(exc), False)
            raise _TryAgain from exc
        state.absorb(response, wire_ids)
        if state.pending:
            raise _TryAgain

    from tenacity import RetryError, retry_if_exception_type  # noqa: PLC0415 - see RetryPolicy

    try:
        for retry in policy.retrying(retry_if_exception_type(_TryAgain), reraise=False):
            with retry:
                attempt()
    except RetryError:
        pass  # what is still pending is reported below
    except Exception as exc:
        rest = list(state.pending.items())
        state.pending.clear()
        if error_code(exc) in BATCH_TOO_LONG_CODES and len(rest) > 1:
            # An endpoint whose limit is below ours (or counts differently): halves, in order,
            # until each call passes or one entry alone is refused and reported.
            log.warning(
                "%s refused %d entries (%s); sending them in halves", operation, len(rest), exc
            )
            half = len(rest) // 2
            for part in (rest[:half], rest[half:]):
                sub = _run(operation, part, call, to_entry, policy)
                state.succeeded.extend(sub.succeeded)
                state.failed.extend(sub.failed)
                state.calls += sub.calls
            return BatchResult(tuple(state.succeeded), tuple(state.failed), state.calls)
        state.failed.extend(EntryFailure(key, error_code(exc), str(exc), True) for key, _ in rest)
    failed = state.failed + [state.last_error[key] for key in state.pending]
    if failed:
        log.error(
            "%s: %d of %d entries failed after %d calls: %s",
            operation,
            len(failed),
            len(items),
            state.calls,
            "; ".join(f"{f.key}: {f.code} {f.message}" for f in failed[:5]),
        )
    return BatchResult(tuple(state.succeeded), tuple(failed), state.calls)


def _in_batches(
    operation: str,
    items: Sequence[tuple[str, T]],
    call: Callable[[list[dict[str, Any]]], Mapping[str, Any]],
    to_entry: Callable[[T], dict[str, Any]],
    policy: RetryPolicy,
) -> BatchResult:
    result = BatchResult()
    for start in range(0, len(items), MAX_BATCH_ENTRIES):
        chunk = items[start : start + MAX_BATCH_ENTRIES]
        result = result.merge(_run(operation, chunk, call, to_entry, policy))
    return result


def _message_entry(message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": message.body}
    if message.group_id is not None:
        entry["MessageGroupId"] = message.group_id
    if message.dedup_id is not None:
        entry["MessageDeduplicationId"] = message.dedup_id
    if message.delay_seconds is not None:
        entry["DelaySeconds"] = message.delay_seconds
    if message.string_attributes:
        entry["MessageAttributes"] = string_attributes(message)
    return entry


def string_attributes(message: OutgoingMessage) -> dict[str, dict[str, str]]:
    """The message's attributes as SQS and SNS take them."""
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in message.string_attributes.items()
    }


def send_batch(
    sqs: SQSClient,
    queue_url: str,
    messages: Iterable[tuple[str, OutgoingMessage]],
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """Send ``(key, message)`` pairs with SendMessageBatch, in order, in as few calls as the
    limits allow. A message larger than ``max_bytes`` fails alone with code
    ``MessageTooLarge``; the others are still sent."""
    policy = policy or RetryPolicy()
    batches, too_large = plan_batches(list(messages), size_of=message_size, max_bytes=max_bytes)
    result = BatchResult(
        failed=tuple(
            EntryFailure(
                key,
                "MessageTooLarge",
                f"{size} bytes is over the {max_bytes}-byte limit; store the body in S3 and "
                "send a reference instead",
                True,
            )
            for key, size in too_large
        )
    )

    def call(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        return sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]

    for batch in batches:
        result = result.merge(_run("SendMessageBatch", batch, call, _message_entry, policy))
    return result


def delete_batch(
    sqs: SQSClient,
    queue_url: str,
    receipt_handles: Iterable[tuple[str, str]],
    *,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """Delete ``(key, receipt handle)`` pairs with DeleteMessageBatch."""

    def call(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        return sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]

    return _in_batches(
        "DeleteMessageBatch",
        list(receipt_handles),
        call,
        lambda handle: {"ReceiptHandle": handle},
        policy or RetryPolicy(),
    )


def change_visibility_batch(
    sqs: SQSClient,
    queue_url: str,
    items: Iterable[tuple[str, tuple[str, int]]],
    *,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """Set ``(key, (receipt handle, seconds))`` visibility timeouts with
    ChangeMessageVisibilityBatch; seconds are clamped to SQS's 0..43200."""

    def call(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        return sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]

    def to_entry(item: tuple[str, int]) -> dict[str, Any]:
        handle, seconds = item
        return {
            "ReceiptHandle": handle,
            "VisibilityTimeout": max(0, min(MAX_VISIBILITY_TIMEOUT, seconds)),
        }

    return _in_batches(
        "ChangeMessageVisibilityBatch", list(items), call, to_entry, policy or RetryPolicy()
    )
