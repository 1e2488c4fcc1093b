"""What SQS and SNS enforce, defined once. Every room checks against these names."""

from __future__ import annotations

__all__ = [
    "MAX_BATCH_ENTRIES",
    "MAX_MESSAGE_BYTES",
    "MAX_VISIBILITY_TIMEOUT",
    "MESSAGE_BYTES_RANGE",
    "SNS_MAX_BATCH_BYTES",
    "SNS_MAX_MESSAGE_BYTES",
    "SQS_ID",
    "is_sqs_id",
]

MAX_MESSAGE_BYTES = 262_144
"""The default byte limit of one message and of one batch call (SQS's classic 256 KiB).

Queues may be configured up to 1 MiB; ``sqs.maxMessageBytes`` says what yours allow."""

MESSAGE_BYTES_RANGE = (1_024, 1_048_576)
"""The message size limits a queue may be configured with (1 KiB to 1 MiB)."""

MAX_BATCH_ENTRIES = 10
"""SQS's limit on the entries of one batch call (send, delete, change visibility)."""

MAX_VISIBILITY_TIMEOUT = 43_200
"""Twelve hours: the longest visibility timeout SQS accepts."""

SQS_ID = r"[\x21-\x7e]{1,128}"
"""MessageGroupId and MessageDeduplicationId: 1-128 printable ASCII characters, no space.

The upload id becomes the group id of every message of its upload, so it obeys this too.
A pattern for ``re``; :func:`is_sqs_id` checks it without compiling it (a cold start)."""


def is_sqs_id(value: object) -> bool:
    """Whether ``value`` may be a FIFO MessageGroupId or MessageDeduplicationId."""
    # Printable ASCII is \x20-\x7e: without the space, exactly SQS_ID's characters.
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


SNS_MAX_MESSAGE_BYTES = 262_144
"""SNS's limit on one published message (256 KiB), whatever its subscribers' queues allow."""

SNS_MAX_BATCH_BYTES = 262_144
"""SNS's limit on one PublishBatch call: all its entries together, not each (256 KiB)."""
