"""What a failed AWS call says, read in one place: the error codes of a ``ClientError``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import botocore.exceptions

__all__ = [
    "client_error_code",
    "client_error_codes",
    "client_error_message",
    "response_error_codes",
]


def client_error_code(exc: botocore.exceptions.ClientError) -> str:
    """The error code AWS answered with (``""`` when the response names none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def client_error_codes(exc: botocore.exceptions.ClientError) -> frozenset[str]:
    """The error code and, when there is one, the query-protocol code beside it: SQS's JSON
    protocol answers ``QueueDoesNotExist`` with ``AWS.SimpleQueueService.NonExistentQueue``
    as its ``QueryErrorCode``, and endpoints differ in which of the two they send."""
    return response_error_codes(exc.response)


def response_error_codes(response: Mapping[str, Any]) -> frozenset[str]:
    """:func:`client_error_codes` of a parsed response (a botocore hook sees the response
    before any exception is made of it)."""
    error = response.get("Error", {})
    return frozenset(str(code) for code in (error.get("Code"), error.get("QueryErrorCode")) if code)


def client_error_message(exc: botocore.exceptions.ClientError) -> str:
    """The message AWS answered with, stripped (``""`` when there is none)."""
    return str(exc.response.get("Error", {}).get("Message", "")).strip()
