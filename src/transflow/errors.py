"""Every error transflow raises, in one place.

Each one says what was wrong and what to do about it. Catch :class:`TransflowError` to catch
them all. This module imports nothing from the rest of the package, so any module may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ChannelError",
    "ConfigError",
    "EventFormatError",
    "JobFormatError",
    "SseEncodingError",
    "SubscriberLagged",
    "SubscriptionClosed",
    "SubscriptionDenied",
    "TransflowError",
    "UnknownConfigKeyWarning",
]


class TransflowError(Exception):
    """Base class of every error raised by transflow."""


class ConfigError(TransflowError):
    """The configuration (file or environment) is missing, malformed or out of range."""


class JobFormatError(TransflowError, ValueError):
    """A message body is not a valid transflow wire object.

    ``problems`` lists every problem found, each prefixed with its path
    (``objects[0].key: required``), so one round trip fixes them all. It is also a
    :class:`ValueError`, so code that validates input generically still catches it.
    """

    def __init__(self, what: str, problems: Iterable[str]) -> None:
        self.what = what
        self.problems: tuple[str, ...] = tuple(problems)
        listed = "; ".join(self.problems) if self.problems else "no details"
        super().__init__(
            f"invalid {what}: {listed}. Fix the sender so that it writes the transflow wire "
            "format (see docs/wire-format.md)."
        )


class EventFormatError(JobFormatError):
    """A progress event body is not a valid transflow progress event.

    A subclass of :class:`JobFormatError`, so one ``except JobFormatError`` covers every
    malformed message the pipeline can receive.
    """


class UnknownConfigKeyWarning(UserWarning):
    """A configuration key transflow does not know; usually a typo. It is ignored."""


class ChannelError(TransflowError, ValueError):
    """A progress channel is neither ``upload:{branch}:{uploadId}`` nor ``upload:{branch}:*``."""


class SubscriptionDenied(TransflowError, PermissionError):
    """The hub's ``authorize`` hook refused this principal the channel."""


class SubscriptionClosed(TransflowError):
    """The subscription ended: closed by its owner, or its hub stopped. Subscribe again."""


class SubscriberLagged(SubscriptionClosed):
    """The subscriber fell more events behind than its buffer holds and was cut off, so it
    would not slow the others; reconnect with the last event id it saw to resume."""


class SseEncodingError(TransflowError, ValueError):
    """A Server-Sent Events field cannot be encoded: ``id`` and ``event`` must not contain
    CR, LF or NUL, and ``retry`` must be a non-negative integer."""
