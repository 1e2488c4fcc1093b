"""A received SQS message, whichever way it arrived: a Lambda event record or ReceiveMessage.

The processor, the poller and the hub all handle :class:`ReceivedMessage`, so one handler
serves both Lambda and long-running workers. Pure: no AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr

__all__ = ["ReceivedMessage"]


@attrs.frozen
class ReceivedMessage:
    """One message as received from SQS.

    ``attributes`` are the system attributes (``MessageGroupId``, ``ApproximateReceiveCount``,
    ``SentTimestamp``, …) as strings, the same names in both sources.
    """

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, str] = attrs.field(factory=dict)
    event_source_arn: str | None = None

    @property
    def group_id(self) -> str | None:
        """The FIFO MessageGroupId, or None on a standard queue."""
        return self.attributes.get("MessageGroupId")

    @property
    def receive_count(self) -> int:
        """How many times SQS has delivered this message, this delivery included (1 first)."""
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "1"))
        except ValueError:
            return 1

    @property
    def dedup_id(self) -> str | None:
        """The FIFO MessageDeduplicationId, when SQS reported it."""
        return self.attributes.get("MessageDeduplicationId")

    @classmethod
    def from_lambda_record(cls, record: object) -> ReceivedMessage:
        """From one record of a Lambda SQS event (``messageId``, ``receiptHandle``, …).

        Never raises: a field of the wrong type reads as empty (a record without a
        ``messageId`` cannot be named in ``batchItemFailures``; callers fail the batch)."""
        fields: Mapping[Any, Any] = record if isinstance(record, Mapping) else {}
        return cls(
            message_id=_text(fields.get("messageId")),
            receipt_handle=_text(fields.get("receiptHandle")),
            body=_text(fields.get("body")),
            attributes=_attributes(fields.get("attributes")),
            event_source_arn=_text(fields.get("eventSourceARN")) or None,
        )

    @classmethod
    def from_sqs_message(cls, message: Mapping[str, Any]) -> ReceivedMessage:
        """From one message of a ReceiveMessage response (``MessageId``, ``ReceiptHandle``, …).

        Ask ReceiveMessage for ``MessageSystemAttributeNames=["All"]`` to fill attributes."""
        fields: Mapping[Any, Any] = message if isinstance(message, Mapping) else {}
        return cls(
            message_id=_text(fields.get("MessageId")),
            receipt_handle=_text(fields.get("ReceiptHandle")),
            body=_text(fields.get("Body")),
            attributes=_attributes(fields.get("Attributes")),
        )


def _text(value: object) -> str:
    # SQS sends strings; anything else came from elsewhere (str() of a 5,000-digit int raises).
    return value if isinstance(value, str) else ""


def _attributes(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
