"""Lambda's SQS batch contract, defined once: records in, partial batch response out.

An SQS event source mapping with ``ReportBatchItemFailures`` hands a function a batch of
records and reads back ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``: the
listed messages return to the queue, the others are deleted. Both handlers (the processor's
and the bridge's) answer through :func:`partial_batch_response`.

:func:`process_partial_response` is the loop, in the style of AWS Lambda Powertools'
``utilities.batch``: it turns records into :class:`~transflow._wire.messages.ReceivedMessage`,
asks a pure :class:`BatchGate` whether each may run, calls the record handler, and collects
the failures. The gate holds the FIFO rule: once a message of a group failed, the later
messages of that group in the batch are reported failed without running (running them would
let them overtake the failed one); other groups go on. Once Lambda time runs short nothing
more starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypedDict

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.messages import ReceivedMessage
from transflow.errors import EventFormatError, TransflowError

__all__ = [
    "BatchGate",
    "BatchItemFailure",
    "BatchOutcome",
    "LambdaContext",
    "PartialBatchResponse",
    "RecordHandler",
    "partial_batch_response",
    "process_partial_response",
    "sqs_records",
]

log = logging.getLogger(__name__)


class LambdaContext(Protocol):
    """The part of the Lambda context object batch handlers use."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


class BatchItemFailure(TypedDict):
    """One failed record of a Lambda partial batch response, by its SQS message id."""

    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    """What Lambda's ``ReportBatchItemFailures`` expects: ``{"batchItemFailures": [...]}``."""

    batchItemFailures: list[BatchItemFailure]


RemainingTime = Callable[[], float]
"""Seconds of Lambda time left."""

RecordHandler = Callable[[ReceivedMessage, "RemainingTime | None"], None]
"""Runs one record; returns on success, raises on failure (the record returns to the queue)."""


def partial_batch_response(failed_message_ids: Iterable[str]) -> PartialBatchResponse:
    """The response naming ``failed_message_ids`` (in order, each once)."""
    seen: dict[str, None] = dict.fromkeys(failed_message_ids)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in seen]}


def sqs_records(event: object) -> list[ReceivedMessage]:
    """The records of a Lambda SQS event as received messages; raises
    :class:`EventFormatError` when ``event`` has no ``Records`` array."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise EventFormatError(
            "Lambda SQS event",
            ["Records: required array; is the function wired to an SQS event source?"],
        )
    return [
        ReceivedMessage.from_lambda_record(record if isinstance(record, Mapping) else {})
        for record in records
    ]


@attrs.frozen
class BatchGate:
    """Which records of one batch may still run: pure, one value per step of the batch.

    ``time_margin`` is the Lambda time (seconds) below which no record starts."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    time_margin: float
    failed_groups: frozenset[str] = frozenset()
    out_of_time: bool = False

    def refusal(self, message: ReceivedMessage, remaining: float | None) -> str | None:
        """Why ``message`` must not run now, or None when it may."""
        if self.out_of_time:
            return "an earlier record found too little Lambda time left"
        if message.group_id is not None and message.group_id in self.failed_groups:
            return f"an earlier message of group {message.group_id!r} failed in this batch"
        if remaining is not None and remaining < self.time_margin:
            return (
                f"only {remaining:.1f} s of Lambda time left, below the "
                f"{self.time_margin:g} s margin"
            )
        return None

    def after_failure(self, message: ReceivedMessage, remaining: float | None) -> BatchGate:
        """The gate once ``message`` failed or was refused: its group is closed, and so is
        the whole batch when time ran short."""
        groups = self.failed_groups
        if message.group_id is not None:
            groups = groups | {message.group_id}
        short = self.out_of_time or (remaining is not None and remaining < self.time_margin)
        return attrs.evolve(self, failed_groups=groups, out_of_time=short)


@attrs.frozen
class BatchOutcome:
    """How a batch went: how many records it had and which failed (message ids, in order)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    total: int
    failed: tuple[str, ...] = ()

    @property
    def all_failed(self) -> bool:
        """Whether the batch had records and none of them succeeded."""
        return self.total > 0 and len(self.failed) == self.total

    def response(self) -> PartialBatchResponse:
        """The partial batch response for Lambda."""
        return partial_batch_response(self.failed)


def process_partial_response(
    event: Mapping[str, Any],
    handler: RecordHandler,
    *,
    context: LambdaContext | None = None,
    time_margin: float = 0.0,
) -> BatchOutcome:
    """Run ``handler`` on each record of an SQS ``event`` in order, under the FIFO rule.

    An exception from ``handler`` fails its record only, never the batch; one that is not a
    :class:`TransflowError` (which say what went wrong themselves) is logged with its
    traceback."""
    remaining: RemainingTime | None = None
    if context is not None:
        remaining = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    messages = sqs_records(event)
    gate = BatchGate(time_margin)
    failed: list[str] = []
    for message in messages:
        left = remaining() if remaining is not None else None
        reason = gate.refusal(message, left)
        if reason is None:
            try:
                handler(message, remaining)
                continue
            except Exception as exc:  # a record's failure is its own, never the batch's
                if not isinstance(exc, TransflowError):
                    log.exception("message %s failed unexpectedly", message.message_id)
        else:
            log.warning(
                "message %s (group %s) not run, reported failed: %s",
                message.message_id,
                message.group_id,
                reason,
            )
        gate = gate.after_failure(message, left)
        failed.append(message.message_id)
    return BatchOutcome(len(messages), tuple(failed))
