"""Every error transflow raises, in one place.

Each one says what was wrong and what to do about it. Catch :class:`TransflowError` to catch
them all. This module imports nothing from the rest of the package, so any module may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BridgeError",
    "ConfigError",
    "ConfirmationRequiredError",
    "EventFormatError",
    "JobFormatError",
    "ProvisionError",
    "ProvisionWarning",
    "QueueNotFoundError",
    "TransflowError",
    "UnknownConfigKeyWarning",
    "UploadError",
    "UploadMetadataError",
    "UploadRefusedError",
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


class UploadError(TransflowError, ValueError):
    """``create_upload`` was called with arguments it cannot use (no files, a malformed
    content-type pattern, an upload id that cannot be a key segment, …)."""


class UploadRefusedError(UploadError):
    """One or more files of an upload were refused before anything was signed.

    ``problems`` holds ``(file name, reason)`` pairs, every refused file at once, so the
    browser can tell its user which files to drop or fix.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        listed = "; ".join(f"{name!r}: {reason}" for name, reason in self.problems)
        super().__init__(
            f"upload refused: {listed or 'no details'}. Remove or fix these files and "
            "ask for the upload again."
        )


class UploadMetadataError(TransflowError, ValueError):
    """An uploaded object's S3 metadata is not what ``create_upload`` writes.

    ``problems`` lists every problem found with the metadata key it concerns.
    """

    def __init__(self, key: str, problems: Iterable[str]) -> None:
        self.key = key
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(
            f"object {key!r} has unusable transflow metadata: {'; '.join(self.problems)}. "
            "Upload files through transflow.create_upload (or write the same x-amz-meta-* "
            "keys: uploadid, templateid, fields, userid, permissions, filecount)."
        )


class BridgeError(TransflowError):
    """Some S3 records could not be turned into queued jobs (raised by
    ``GroupingBridge.lambda_handler`` for direct and EventBridge invocations, so that Lambda
    retries the event and, in the end, sends it to the function's on-failure destination).

    ``result`` is the :class:`transflow.BridgeResult` with every failure and its reason.
    """

    def __init__(self, message: str, result: object) -> None:
        self.result = result
        super().__init__(message)
