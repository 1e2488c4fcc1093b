"""Where progress events go: one value, built once from the configuration.

A deployment sends progress either to its FIFO progress queue (one stream process) or, in
fan-out mode, to the SNS FIFO progress topic (any number of them). Each place has its own
limits, and the value carries them, so the publisher never applies one service's limits to
the other: SQS takes what the queue is configured for (up to 1 MiB per message and per
SendMessageBatch), SNS takes 256 KiB per message and per PublishBatch call, whatever the
queues behind it allow.

:class:`ProgressDestination` is closed: :class:`ProgressQueue` or :class:`ProgressTopic`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from transflow._wire import validators
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.limits import (
    MAX_BATCH_ENTRIES,
    MAX_MESSAGE_BYTES,
    MESSAGE_BYTES_RANGE,
    SNS_MAX_BATCH_BYTES,
    SNS_MAX_MESSAGE_BYTES,
)
from transflow.errors import ConfigError

if TYPE_CHECKING:
    from transflow.config import TransflowConfig

__all__ = ["ProgressDestination", "ProgressQueue", "ProgressTopic"]


@attrs.frozen
class ProgressDestination:
    """Where progress goes: a :class:`ProgressQueue` or a :class:`ProgressTopic` (only
    those two), with the limits that apply there. Build it with :meth:`from_config`."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    def __attrs_post_init__(self) -> None:
        if type(self) is ProgressDestination:
            raise TypeError("ProgressDestination is ProgressQueue or ProgressTopic")

    @property
    def address(self) -> str:
        """The queue URL or the topic ARN."""
        raise NotImplementedError

    @property
    def max_message_bytes(self) -> int:
        """The largest one event may be, in bytes as the service counts them."""
        raise NotImplementedError

    @property
    def max_batch_bytes(self) -> int:
        """The most one batch call may carry, all its entries together."""
        raise NotImplementedError

    @property
    def max_entries(self) -> int:
        """The most entries one batch call may carry."""
        return MAX_BATCH_ENTRIES

    @classmethod
    def from_config(
        cls,
        config: TransflowConfig,
        *,
        queue_url: str | None = None,
        topic_arn: str | None = None,
    ) -> ProgressDestination:
        """Where ``config`` says progress goes: in fan-out mode (``sqs.progressFanout:
        "sns"`` or ``sqs.progressTopicArn``) the topic, ``sqs.progressTopicArn`` or else
        ``topic_arn`` (what :func:`~transflow.ops.provision.ensure_topic` returns); otherwise
        the progress queue, ``sqs.progressQueueUrl`` or else ``queue_url`` (what
        :func:`~transflow.ops.provision.resolve_queue_urls` returns), with the queue's
        ``sqs.maxMessageBytes``. Raises :class:`~transflow.errors.ConfigError` when the
        address is in neither."""
        if config.sqs.fanout:
            arn = config.sqs.progress_topic_arn or topic_arn
            if not arn:
                raise ConfigError(
                    "fan-out mode needs the progress topic's ARN: set sqs.progressTopicArn "
                    "(or SNS_PROGRESS_TOPIC_ARN), or pass topic_arn= (ensure_topic and "
                    "ensure_queues_report return it)"
                )
            return ProgressTopic(arn)
        url = config.sqs.progress_queue_url or queue_url
        if not url:
            raise ConfigError(
                "no progress queue URL: set sqs.progressQueueUrl (or SQS_PROGRESS_QUEUE_URL), "
                "or pass queue_url= (resolve_queue_urls returns it)"
            )
        return ProgressQueue(url, max_message_bytes=config.sqs.max_message_bytes)


@attrs.frozen
class ProgressQueue(ProgressDestination):
    """The FIFO progress queue at ``url``, read by one stream process.

    ``max_message_bytes`` is the queue's configured limit (``sqs.maxMessageBytes``, 1 KiB to
    1 MiB); SQS applies it to one message and to one SendMessageBatch call alike."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    url: str = attrs.field(validator=validators.non_empty_text)
    max_message_bytes: int = attrs.field(
        default=MAX_MESSAGE_BYTES, validator=validators.bounded_int(1, MESSAGE_BYTES_RANGE[1])
    )

    @property
    def address(self) -> str:
        return self.url

    @property
    def max_batch_bytes(self) -> int:
        return self.max_message_bytes


@attrs.frozen
class ProgressTopic(ProgressDestination):
    """The SNS FIFO progress topic at ``arn`` (fan-out mode): every hub instance's queue
    gets every event.

    SNS's limits apply, not the queues': 256 KiB per message and per PublishBatch call (all
    entries together), ten entries per call."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    arn: str = attrs.field(validator=validators.non_empty_text)

    @property
    def address(self) -> str:
        return self.arn

    @property
    def max_message_bytes(self) -> int:
        return SNS_MAX_MESSAGE_BYTES

    @property
    def max_batch_bytes(self) -> int:
        return SNS_MAX_BATCH_BYTES
