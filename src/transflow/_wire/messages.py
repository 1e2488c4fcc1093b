"""A received SQS message, whichever way it arrived: a Lambda event record or ReceiveMessage.

The processor, the poller and the hub all handle :class:`ReceivedMessage`, so one handler
serves both Lambda and long-running workers. Pure: no AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ReceivedMessage"]


@attrs.frozen
class ReceivedMessage:
    """One message as received from SQS.

    ``attributes`` are the system attributes (``MessageGroupId``, ``ApproximateReceiveCount``,
    ``SentTimestamp``, …) as strings, the same names in both sources.
    """

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
    def from_lambda_record(cls, record: Mapping[str, Any]) -> ReceivedMessage:
        """From one record of a Lambda SQS event (``messageId``, ``receiptHandle``, …)."""
        return cls(
            message_id=str(record.get("messageId", "")),
            receipt_handle=str(record.get("receiptHandle", "")),
            body=str(record.get("body", "")),
            attributes={str(k): str(v) for k, v in (record.get("attributes") or {}).items()},
            event_source_arn=record.get("eventSourceARN"),
        )

    @classmethod
    def from_sqs_message(cls, message: Mapping[str, Any]) -> ReceivedMessage:
        """From one message of a ReceiveMessage response (``MessageId``, ``ReceiptHandle``, …).

        Ask ReceiveMessage for ``MessageSystemAttributeNames=["All"]`` to fill attributes."""
        return cls(
            message_id=str(message.get("MessageId", "")),
            receipt_handle=str(message.get("ReceiptHandle", "")),
            body=str(message.get("Body", "")),
            attributes={str(k): str(v) for k, v in (message.get("Attributes") or {}).items()},
        )
