"""The one retry policy: which AWS failures are transient, and how long to wait between tries.

Exponential backoff with full jitter (AWS's advice for throttling and 5xx), built on tenacity.
Every room that retries builds its controller here, so attempts and waits are tuned once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import botocore.exceptions

from transflow._aws.errors import client_error_code, client_error_message
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr

if TYPE_CHECKING:
    from tenacity import Retrying
    from tenacity.retry import retry_base

__all__ = [
    "PERMANENT_CODES",
    "RETRYABLE_CODES",
    "RetryPolicy",
    "is_permanent_failure",
    "is_retryable_entry",
    "is_retryable_error",
]

# Error codes AWS documents as transient for SQS (and S3, which shares the helper).
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "KmsThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "AWS.SimpleQueueService.InternalError",
        "AWS.SimpleQueueService.ServiceUnavailable",
    }
)
# Error codes that no retry can cure, whatever the response's SenderFault or status says:
# LocalStack answers a stale receipt handle with SenderFault=false, and retrying it only
# multiplies calls (each try gets the same answer).
PERMANENT_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidReceiptHandle",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.InvalidReceiptHandle",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "BatchEntryIdsNotDistinct",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "InvalidMessageContents",
        "MessageTooLong",
    }
)
# Codes generic enough that only the message tells a bad receipt handle apart.
_GENERIC_INVALID_CODES = frozenset(
    {"InvalidParameterValue", "InvalidParameterValueException", "ValidationError"}
)
_CONNECTION_ERRORS = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
)


def is_permanent_failure(code: str, message: str = "") -> bool:
    """Whether an error code (with its message) means the same request can never succeed:
    an invalid or stale receipt handle above all, which SenderFault does not always flag."""
    if code in PERMANENT_CODES:
        return True
    return code in _GENERIC_INVALID_CODES and "receipt handle" in message.lower()


def is_retryable_entry(code: str, sender_fault: bool, message: str = "") -> bool:
    """Whether a failed batch entry may succeed if sent again. The code decides first
    (permanent, then transient); only an unknown code leaves it to SenderFault."""
    if is_permanent_failure(code, message):
        return False
    return code in RETRYABLE_CODES or not sender_fault


def is_retryable_error(exc: BaseException) -> bool:
    """Whether a failed call may succeed if made again (throttling, 5xx, network)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        code = client_error_code(exc)
        if is_permanent_failure(code, client_error_message(exc)):
            return False
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_CODES or status == 429 or status >= 500
    return False


@attrs.frozen
class RetryPolicy:
    """How hard to try: ``attempts`` calls at most, waits drawn from an exponential window
    with full jitter between ``initial`` and ``maximum`` seconds."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    initial: float = attrs.field(default=0.05, validator=attrs.validators.ge(0))
    maximum: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))

    def wait(self, failures: int) -> float:
        """Seconds to wait after ``failures`` tries in a row failed (0 for the first retry
        of an operation): full jitter over the same exponential window as :meth:`retrying`."""
        import random  # noqa: PLC0415 - only a retried call needs it

        window = min(self.maximum, self.initial * 2 ** (failures + 1))
        return random.uniform(0, window)  # noqa: S311 - jitter, not secrecy

    def retrying(self, retry: retry_base | None = None, *, reraise: bool = True) -> Retrying:
        """A tenacity controller for one operation: by default it retries what
        :func:`is_retryable_error` calls transient and re-raises the last error."""
        # tenacity is imported by the first retried call, not by a Lambda handler's import.
        from tenacity import (  # noqa: PLC0415
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_random_exponential,
        )

        if retry is None:
            retry = retry_if_exception(is_retryable_error)
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.initial, max=self.maximum),
            retry=retry,
            reraise=reraise,
        )
