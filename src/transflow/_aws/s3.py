"""What S3's answers mean, defined once: error codes of a missing object."""

from __future__ import annotations

import botocore.exceptions

from transflow._aws.errors import client_error_code

__all__ = ["NOT_FOUND_CODES", "error_code", "is_not_found"]

NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
"""GetObject says ``NoSuchKey``; HeadObject has no body, so botocore reports ``404`` (some
endpoints ``NotFound``)."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call, or the exception's class name."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return client_error_code(exc)
    return type(exc).__name__


def is_not_found(exc: BaseException) -> bool:
    """Whether a failed S3 call failed because the object (or key) does not exist."""
    return isinstance(exc, botocore.exceptions.ClientError) and error_code(exc) in NOT_FOUND_CODES
