"""Every error transflow raises, in one place.

Each one says what was wrong and what to do about it. Catch :class:`TransflowError` to catch
them all. This module imports nothing from the rest of the package, so any module may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "ConfirmationRequiredError",
    "EventFormatError",
    "JobFormatError",
    "ProvisionError",
    "ProvisionWarning",
    "QueueNotFoundError",
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


class ProvisionError(TransflowError):
    """A queue cannot be brought to the state transflow needs (for example, an existing
    queue of the same name is not FIFO, which SQS cannot change)."""


class QueueNotFoundError(TransflowError):
    """A queue transflow needs does not exist on the endpoint."""


class ConfirmationRequiredError(TransflowError):
    """A destructive operation (purge, delete) was asked for without the confirmation it
    needs."""


class ProvisionWarning(UserWarning):
    """Provisioning went through, but something in the configuration deserves a look (a
    visibility timeout too short for the function, an attribute the endpoint ignores)."""
