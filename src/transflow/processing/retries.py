"""Retries of one step inside one delivery: :class:`StepRetry` and the decision to retry.

A step declares what is transient (``@template.step("x", retry=StepRetry(on=(OSError,)))``);
a transient failure is retried in place, with exponential backoff (full jitter, capped) from
tenacity, instead of costing a whole redelivery after the visibility timeout. The decision
(:func:`decide_retry`) is pure; :func:`run_step` performs it.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import botocore.exceptions

from transflow._aws.errors import client_error_code
from transflow._aws.retry import RETRYABLE_CODES, is_retryable_error
from transflow.errors import (
    ConfigError,
    JobCancelledError,
    LeaseLostError,
    OutputPathError,
    StepUsageError,
    TemplateDefinitionError,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState
    from tenacity.wait import wait_base

__all__ = ["RETRY_TIME_RESERVE", "RetryVerdict", "StepRetry", "decide_retry", "run_step"]

log = logging.getLogger(__name__)

RETRY_TIME_RESERVE = 5.0
"""Seconds a retry must leave of the job's time budget (Lambda's remaining time, or the
worker's handler timeout), so that the failure can still be reported if it fails again."""

# Errors that say the step or its template is wrong, or that the job must stop: no retry
# can cure them, whatever ``on`` names.
_NEVER_RETRIED: tuple[type[BaseException], ...] = (
    StepUsageError,
    OutputPathError,
    ConfigError,
    JobCancelledError,
    LeaseLostError,
)


def _exception_types(value: object) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not all(isinstance(t, type) and issubclass(t, Exception) for t in items):
        raise TemplateDefinitionError(
            f"StepRetry(on=...) must be exception classes (a tuple of them), not {value!r}"[:300]
        )
    return tuple(items)


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise TemplateDefinitionError(
            f"StepRetry({attribute.name}=...) must be a number of seconds >= 0, not {value!r}"
        )


def _attempts(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise TemplateDefinitionError(
            f"StepRetry(attempts=...) must be a whole number of tries from 1 to 100, not {value!r}"
        )


@attrs.frozen
class StepRetry:
    """How a step is retried within one delivery.

    ``on``: the exception classes that are transient for this step (AWS throttling, 5xx and
    connection errors always are). ``attempts``: tries in all, the first included.
    ``initial``/``maximum``: the backoff window in seconds (doubling, capped at ``maximum``);
    ``jitter`` draws each wait at random from the window (AWS's "full jitter"). A retry never
    starts when its wait would leave less than ``RETRY_TIME_RESERVE`` seconds of the job's
    time. Never retried, whatever ``on`` says: transflow's usage errors (``StepUsageError``,
    ``OutputPathError``, ``ConfigError``), a cancelled job, and AWS 4xx client errors other
    than throttling."""

    on: tuple[type[BaseException], ...] = attrs.field(default=(), converter=_exception_types)
    attempts: int = attrs.field(default=3, validator=_attempts)
    initial: float = attrs.field(default=0.2, validator=_positive)
    maximum: float = attrs.field(default=5.0, validator=_positive)
    jitter: bool = True

    def wait_strategy(self) -> wait_base:
        """The tenacity wait between tries."""
        # tenacity loads with the first step that may retry: most steps never do.
        from tenacity import wait_exponential, wait_random_exponential  # noqa: PLC0415

        if self.jitter:
            return wait_random_exponential(multiplier=self.initial, max=self.maximum)
        return wait_exponential(multiplier=self.initial, max=self.maximum)


class RetryVerdict(enum.Enum):
    """What a failed try of a step leads to."""

    RETRY = "retry"
    PERMANENT = "permanent"
    """A usage error, a cancelled job or an AWS 4xx: never retried."""
    NOT_DECLARED = "not-declared"
    """Not an error the step declared transient."""
    EXHAUSTED = "exhausted"
    """Transient, but the step used all its tries."""
    OUT_OF_TIME = "out-of-time"
    """Transient, but the wait would run past the job's time budget."""


def _is_aws_permanent(exc: BaseException) -> bool:
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    throttled = client_error_code(exc) in RETRYABLE_CODES or status == 429
    return 400 <= status < 500 and not throttled


def decide_retry(
    exc: BaseException, retry: StepRetry, *, tries: int, wait: float, remaining: float
) -> RetryVerdict:
    """Whether try number ``tries`` (1 for the first) of a step that failed with ``exc`` is
    followed by another after ``wait`` seconds, with ``remaining`` seconds of the job's time
    left (``math.inf`` when unbounded)."""
    if isinstance(exc, _NEVER_RETRIED) or _is_aws_permanent(exc):
        return RetryVerdict.PERMANENT
    if not (isinstance(exc, retry.on) or is_retryable_error(exc)):
        return RetryVerdict.NOT_DECLARED
    if tries >= retry.attempts:
        return RetryVerdict.EXHAUSTED
    if math.isfinite(remaining) and wait + RETRY_TIME_RESERVE > remaining:
        return RetryVerdict.OUT_OF_TIME
    return RetryVerdict.RETRY


def run_step(
    func: Callable[[], None],
    retry: StepRetry | None,
    *,
    step: str,
    remaining: Callable[[], float],
    on_retry: Callable[[int, float, BaseException], None],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call ``func`` until it returns or :func:`decide_retry` says stop (then its last error
    propagates); ``on_retry(next_try, wait, error)`` runs before each wait. Returns the
    number of tries."""
    if retry is None:
        func()
        return 1
    from tenacity import Retrying, retry_if_exception  # noqa: PLC0415 - see wait_strategy

    wait = retry.wait_strategy()

    def stop(state: RetryCallState) -> bool:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        assert exc is not None
        verdict = decide_retry(
            exc, retry, tries=state.attempt_number, wait=state.upcoming_sleep, remaining=remaining()
        )
        if verdict in (RetryVerdict.EXHAUSTED, RetryVerdict.OUT_OF_TIME):
            log.warning(
                "step %r: not retried (%s after %d tries): %s",
                step,
                verdict.value,
                state.attempt_number,
                exc,
            )
        return verdict is not RetryVerdict.RETRY

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        assert exc is not None
        delay = state.upcoming_sleep
        log.warning(
            "step %r failed (try %d of %d), retrying in %.2fs: %s: %s",
            step,
            state.attempt_number,
            retry.attempts,
            delay,
            type(exc).__name__,
            exc,
        )
        on_retry(state.attempt_number + 1, delay, exc)

    controller = Retrying(
        stop=stop,
        wait=wait,
        # Every failure goes to ``stop``, where decide_retry has the whole say (a
        # BaseException, such as KeyboardInterrupt, is never retried).
        retry=retry_if_exception(lambda exc: isinstance(exc, Exception)),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    tries = 0
    for try_ in controller:
        with try_:
            tries = try_.retry_state.attempt_number
            func()
    return tries
