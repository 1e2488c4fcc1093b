"""SQS batch calls that lose nothing: SendMessageBatch, DeleteMessageBatch and
ChangeMessageVisibilityBatch, with every entry of every response checked.

Callers give each item a key of their own; this module assigns the wire entry ids (valid,
unique per call), splits items into calls of at most 10 entries and the configured byte
limit, retries what AWS says may be retried (throttling, server errors, dropped connections,
entries failed without sender fault, unless their code says no retry can help, such as a
stale receipt handle) with exponential backoff and jitter, makes calls smaller when one is
refused whole as ``BatchRequestTooLong``, and reports the rest. It never raises for a failed
entry: the caller decides what a failure means.

Order within a message group. A batch call may fail one entry and accept the entries after
it; an accepted message cannot be taken back, and resending the later ones is a no-op for
five minutes (the same deduplication id), so a retried earlier entry would land behind
them. Sends therefore put at most one entry of a FIFO message group in a call, and the next
entry of a group only in a call after its predecessor succeeded or failed for good
(:func:`next_call`): entries of many groups fill a call, one group's entries take a call
each. An entry that failed for good is reported; the group's later entries still go, after
it, so what is delivered of a group is always in the order given. A caller whose consumer
copes with a late entry may trade this for fewer calls (``group_order=False``: the progress
publisher's unpacked events, see :class:`transflow.streaming.fanout.FanOut`).

The decisions (planning, classification) are plain functions; the I/O is the three
``*_batch`` functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from transflow._aws.retry import (
    RetryPolicy,
    is_retryable_entry,
    is_retryable_error,
)
from transflow._aws.s3 import error_code
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
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
    "next_call",
    "plan_batches",
    "send_batch",
    "split_too_large",
]

log = logging.getLogger(__name__)


@attrs.frozen
class OutgoingMessage:
    """One message to send. FIFO queues need ``group_id``; a deterministic ``dedup_id``
    makes a retried send harmless."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    body: str
    group_id: str | None = None
    dedup_id: str | None = None
    delay_seconds: int | None = None
    string_attributes: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class EntryFailure:
    """An item that did not succeed, with AWS's code and message (or ours)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    key: str
    code: str
    message: str
    sender_fault: bool


@attrs.frozen
class BatchResult:
    """What happened to every item: each key is in exactly one of the two."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

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


def next_call(
    pending: Sequence[tuple[str, T]],
    *,
    group_of: Callable[[T], str | None],
    size_of: Callable[[T], int],
    max_bytes: int,
    max_entries: int = MAX_BATCH_ENTRIES,
) -> list[str]:
    """The keys of the next call, from ``pending`` in order (each item within ``max_bytes``
    alone): at most ``max_entries`` and ``max_bytes`` together, and only the first pending
    item of each message group, so an entry that fails in a call has no later entry of its
    group in that call to overtake it. Items without a group (standard queues, deletes) are
    not limited. Never empty when ``pending`` is not."""
    chosen: list[str] = []
    groups: set[str] = set()
    total = 0
    for key, item in pending:
        group = group_of(item)
        if group is not None:
            if group in groups:
                continue
            groups.add(group)
        size = size_of(item)
        if chosen and total + size > max_bytes:
            break
        chosen.append(key)
        total += size
        if len(chosen) >= max_entries:
            break
    return chosen


# -- I/O ----------------------------------------------------------------------------------


def _no_group(_item: object) -> str | None:
    return None


def _no_size(_item: object) -> int:
    return 0


@attrs.define(eq=False)  # an operation's changing state: compared by identity
class _Progress(Generic[T]):
    """The state of one batch operation across its calls."""

    __repr__ = fields_repr

    pending: dict[str, T]
    succeeded: list[str] = attrs.field(factory=list)
    failed: list[EntryFailure] = attrs.field(factory=list)
    last_error: dict[str, EntryFailure] = attrs.field(factory=dict)
    tries: dict[str, int] = attrs.field(factory=dict)
    calls: int = 0

    def fail(self, key: str, failure: EntryFailure) -> None:
        self.failed.append(failure)
        self.pending.pop(key, None)
        self.last_error.pop(key, None)

    def absorb(
        self,
        operation: str,
        response: Mapping[str, Any],
        wire_ids: Mapping[str, str],
        *,
        attempts: int,
    ) -> bool:
        """Take one response in; True when some of its entries are to be sent again."""
        answered: set[str] = set()
        for ok in response.get("Successful", []):
            key = wire_ids.get(ok.get("Id", ""))
            if key is None or key in answered:
                log.warning("%s: the response names an entry not sent: %r", operation, ok)
                continue
            answered.add(key)
            self.succeeded.append(key)
            self.pending.pop(key, None)
            self.last_error.pop(key, None)
        for bad in response.get("Failed", []):
            key = wire_ids.get(bad.get("Id", ""))
            if key is None or key in answered:
                log.warning("%s: the response names an entry not sent: %r", operation, bad)
                continue
            answered.add(key)
            failure = EntryFailure(
                key, bad.get("Code", ""), bad.get("Message", ""), bool(bad.get("SenderFault"))
            )
            if is_retryable_entry(failure.code, failure.sender_fault, failure.message):
                self._retry(key, failure, attempts)
            else:
                self.fail(key, failure)
        # An entry in neither list is a broken response; it may not have been sent.
        for key in wire_ids.values():
            if key not in answered:
                missing = EntryFailure(key, "Missing", "not in the response", False)
                self._retry(key, missing, attempts)
        return any(key in self.pending for key in wire_ids.values())

    def _retry(self, key: str, failure: EntryFailure, attempts: int) -> None:
        self.tries[key] = self.tries.get(key, 0) + 1
        if self.tries[key] >= attempts:
            self.fail(key, failure)
        else:
            self.last_error[key] = failure


def _shrink(operation: str, state: _Progress[Any], keys: list[str], exc: Exception) -> bool:
    """Whether a call refused whole for its size is to be made again with fewer entries (an
    endpoint whose limit is below ours, or counts differently); a single entry so refused is
    reported instead."""
    if error_code(exc) not in BATCH_TOO_LONG_CODES:
        return False
    if len(keys) > 1:
        log.warning("%s refused %d entries (%s); sending fewer per call", operation, len(keys), exc)
        return True
    state.fail(keys[0], EntryFailure(keys[0], error_code(exc), str(exc), True))
    return False


def _may_retry(
    state: _Progress[Any], keys: list[str], exc: Exception, failures: int, policy: RetryPolicy
) -> bool:
    """After a call failed whole: whether to try again, or (after an error no retry can cure,
    or ``policy.attempts`` such calls in a row) to report every pending item failed."""
    if not is_retryable_error(exc):
        for key in list(state.pending):
            state.fail(key, EntryFailure(key, error_code(exc), str(exc), True))
        return False
    for key in keys:
        state.last_error[key] = EntryFailure(key, type(exc).__name__, str(exc), False)
    if failures < policy.attempts:
        return True
    for key in list(state.pending):
        state.fail(
            key,
            state.last_error.get(key) or EntryFailure(key, type(exc).__name__, str(exc), False),
        )
    return False


def _run(
    operation: str,
    items: Sequence[tuple[str, T]],
    call: Callable[[list[dict[str, Any]]], Mapping[str, Any]],
    to_entry: Callable[[T], dict[str, Any]],
    policy: RetryPolicy,
    *,
    group_of: Callable[[T], str | None] = _no_group,
    size_of: Callable[[T], int] = _no_size,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> BatchResult:
    """Calls until each item succeeded or failed for good, planned by :func:`next_call`.

    An entry is tried ``policy.attempts`` times; a call failing whole that many times in a
    row ends the operation (every pending item is reported with its last error)."""
    state = _Progress(dict(items))
    max_entries = MAX_BATCH_ENTRIES
    whole_failures = 0  # calls in a row that failed whole
    waits = 0  # calls in a row that left something to retry
    while state.pending:
        keys = next_call(
            list(state.pending.items()),
            group_of=group_of,
            size_of=size_of,
            max_bytes=max_bytes,
            max_entries=max_entries,
        )
        wire_ids = {f"e{i}": key for i, key in enumerate(keys)}
        entries = [{"Id": wid, **to_entry(state.pending[key])} for wid, key in wire_ids.items()]
        state.calls += 1
        try:
            response = call(entries)
        except Exception as exc:
            if _shrink(operation, state, keys, exc):
                max_entries = max(1, len(keys) // 2)
                continue
            if error_code(exc) in BATCH_TOO_LONG_CODES:
                continue  # one entry alone refused: reported, the rest goes on
            whole_failures += 1
            if not _may_retry(state, keys, exc, whole_failures, policy):
                break
            log.warning("%s failed (%s); retrying %d entries", operation, exc, len(keys))
            time.sleep(policy.wait(waits))
            waits += 1
            continue
        whole_failures = 0
        if state.absorb(operation, response, wire_ids, attempts=policy.attempts):
            time.sleep(policy.wait(waits))
            waits += 1
        else:
            waits = 0
    if state.failed:
        log.error(
            "%s: %d of %d entries failed after %d calls: %s",
            operation,
            len(state.failed),
            len(items),
            state.calls,
            "; ".join(f"{f.key}: {f.code} {f.message}" for f in state.failed[:5]),
        )
    return BatchResult(tuple(state.succeeded), tuple(state.failed), state.calls)


def _group_of(message: OutgoingMessage) -> str | None:
    return message.group_id


def split_too_large(
    messages: Sequence[tuple[str, OutgoingMessage]], max_bytes: int
) -> tuple[list[tuple[str, OutgoingMessage]], list[tuple[str, int]]]:
    """The messages that fit ``max_bytes``, in order, and the keys and sizes of the rest."""
    fit: list[tuple[str, OutgoingMessage]] = []
    too_large: list[tuple[str, int]] = []
    for key, message in messages:
        size = message_size(message)
        if size > max_bytes:
            too_large.append((key, size))
        else:
            fit.append((key, message))
    return fit, too_large


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
    group_order: bool = True,
) -> BatchResult:
    """Send ``(key, message)`` pairs with SendMessageBatch, in order, in as few calls as the
    limits allow. A message larger than ``max_bytes`` fails alone with code
    ``MessageTooLarge``; the others are still sent. ``group_order=False`` lets a call carry
    several entries of one message group: fewer calls, but an entry sent again after a
    partial failure lands behind its group's later entries (for a consumer that orders by
    itself: the progress hub holds a terminal event for an earlier one)."""
    policy = policy or RetryPolicy()
    items, too_large = split_too_large(list(messages), max_bytes)
    failed = tuple(
        EntryFailure(
            key,
            "MessageTooLarge",
            f"{size} bytes is over the {max_bytes}-byte limit; store the body in S3 and "
            "send a reference instead",
            True,
        )
        for key, size in too_large
    )

    def call(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        return sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]

    sent = _run(
        "SendMessageBatch",
        items,
        call,
        _message_entry,
        policy,
        group_of=_group_of if group_order else _no_group,
        size_of=message_size,
        max_bytes=max_bytes,
    )
    return BatchResult(failed=failed).merge(sent)


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

    return _run(
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

    return _run(
        "ChangeMessageVisibilityBatch", list(items), call, to_entry, policy or RetryPolicy()
    )
