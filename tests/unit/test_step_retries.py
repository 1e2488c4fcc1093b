"""Per-step retries and checkpoint resumption: the pure decisions."""

from __future__ import annotations

import math
from typing import Any

import botocore.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import StepRetry, StepUsageError, TemplateDefinitionError, TemplateRegistry
from transflow.errors import ConfigError, JobCancelledError, OutputPathError
from transflow.processing.attempt import resumable_steps
from transflow.processing.retries import RETRY_TIME_RESERVE, RetryVerdict, decide_retry, run_step
from transflow.processing.status import AssemblyStatus


class Flaky(Exception):
    pass


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "GetObject")


RETRY = StepRetry(on=(Flaky, botocore.exceptions.ClientError), attempts=3)


def decide(exc: BaseException, tries: int = 1, wait: float = 0.1, left: float = math.inf) -> str:
    return decide_retry(exc, RETRY, tries=tries, wait=wait, remaining=left).value


def test_a_declared_transient_error_is_retried_until_the_attempts_are_used() -> None:
    assert decide(Flaky()) == "retry"
    assert decide(Flaky(), tries=2) == "retry"
    assert decide(Flaky(), tries=3) == "exhausted"


def test_an_undeclared_error_is_not_retried() -> None:
    assert decide(ValueError("no")) == "not-declared"


@pytest.mark.parametrize(
    "exc",
    [
        StepUsageError("bad call"),
        OutputPathError("bad name"),
        ConfigError("bad setting"),
        JobCancelledError("up-1", "step"),
        client_error("AccessDenied", 403),
        client_error("NoSuchKey", 404),
    ],
)
def test_permanent_errors_are_never_retried_even_when_declared(exc: BaseException) -> None:
    everything = StepRetry(on=(Exception,), attempts=5)
    assert decide_retry(exc, everything, tries=1, wait=0, remaining=math.inf) is (
        RetryVerdict.PERMANENT
    )


@pytest.mark.parametrize(
    "exc", [client_error("SlowDown", 503), client_error("Throttling", 400), client_error("X", 429)]
)
def test_aws_throttling_and_5xx_are_transient_without_being_declared(exc: BaseException) -> None:
    assert decide_retry(exc, StepRetry(), tries=1, wait=0, remaining=math.inf) is (
        RetryVerdict.RETRY
    )


def test_a_retry_never_runs_past_the_time_budget() -> None:
    assert decide(Flaky(), wait=1.0, left=1.0 + RETRY_TIME_RESERVE + 0.01) == "retry"
    assert decide(Flaky(), wait=1.0, left=1.0 + RETRY_TIME_RESERVE - 0.01) == "out-of-time"


def test_run_step_retries_then_returns_the_tries_and_announces_each_retry() -> None:
    failures = [Flaky("1"), Flaky("2")]
    announced: list[tuple[int, float]] = []
    slept: list[float] = []

    def step() -> None:
        if failures:
            raise failures.pop(0)

    tries = run_step(
        step,
        StepRetry(on=(Flaky,), attempts=3, initial=0.5, maximum=0.75, jitter=False),
        step="s",
        remaining=lambda: math.inf,
        on_retry=lambda n, wait, exc: announced.append((n, wait)),
        sleep=slept.append,
    )
    assert tries == 3
    assert announced == [(2, 0.5), (3, 0.75)]
    assert slept == [0.5, 0.75]


def test_run_step_reraises_the_last_error_when_the_budget_is_spent() -> None:
    calls: list[int] = []
    budget = iter([100.0, 0.0])

    def step() -> None:
        calls.append(1)
        raise Flaky(f"try {len(calls)}")

    with pytest.raises(Flaky, match="try 2"):
        run_step(
            step,
            StepRetry(on=(Flaky,), attempts=5, initial=0.1, jitter=False),
            step="s",
            remaining=lambda: next(budget),
            on_retry=lambda *_: None,
            sleep=lambda _: None,
        )
    assert len(calls) == 2


def test_a_base_exception_is_never_retried() -> None:
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_step(
            step,
            StepRetry(on=(Flaky,)),
            step="s",
            remaining=lambda: math.inf,
            on_retry=lambda *_: None,
            sleep=lambda _: None,
        )
    assert calls == [1]


@given(
    initial=st.floats(0, 10),
    maximum=st.floats(0, 30),
    failures=st.integers(1, 6),
)
def test_jittered_waits_stay_within_the_cap(initial: float, maximum: float, failures: int) -> None:
    slept: list[float] = []
    left = [failures]

    def step() -> None:
        if left[0]:
            left[0] -= 1
            raise Flaky

    run_step(
        step,
        StepRetry(on=(Flaky,), attempts=failures + 1, initial=initial, maximum=maximum),
        step="s",
        remaining=lambda: math.inf,
        on_retry=lambda *_: None,
        sleep=slept.append,
    )
    assert len(slept) == failures
    assert all(0 <= wait <= maximum for wait in slept)


@pytest.mark.parametrize(
    "options",
    [
        {"on": ("not a class",)},
        {"on": (int,)},
        {"attempts": 0},
        {"attempts": True},
        {"initial": -1},
        {"maximum": "5"},
    ],
)
def test_a_bad_retry_declaration_says_what_is_wrong(options: dict[str, object]) -> None:
    with pytest.raises(TemplateDefinitionError, match="StepRetry"):
        StepRetry(**options)  # type: ignore[arg-type]


def test_step_options_are_checked_and_kept() -> None:
    template = TemplateRegistry().template("t", output_bucket="b")
    retry = StepRetry(on=(Flaky,))

    @template.step("a", checkpoint=False, retry=retry)
    def a(ctx: object) -> None: ...

    assert (template.steps[0].checkpoint, template.steps[0].retry) == (False, retry)
    with pytest.raises(TemplateDefinitionError, match="checkpoint"):
        template.step("b", checkpoint="yes")  # type: ignore[arg-type]
    with pytest.raises(TemplateDefinitionError, match="StepRetry"):
        template.step("b", retry=3)  # type: ignore[arg-type]


# -- which steps a redelivery may skip ------------------------------------------------------


def _record(
    checkpoints: tuple[str, ...], *, fingerprint: str = "f", ok: str = ""
) -> AssemblyStatus:
    return AssemblyStatus(
        "u", "u", "t", "main", None, fingerprint, 1, "now", ok=ok or None, checkpoints=checkpoints
    )


def _template(*names: str, opted_out: tuple[str, ...] = ()) -> TemplateRegistry:
    registry = TemplateRegistry()
    template = registry.template("t", output_bucket="b")
    for name in names:
        template.add_step(name, lambda ctx: None, checkpoint=name not in opted_out)
    return registry


def test_a_redelivery_skips_the_checkpointed_first_steps() -> None:
    steps = _template("a", "b", "c", "d").get("t").steps
    assert resumable_steps(_record(("a", "b", "c")), "f", steps) == ("a", "b", "c")
    assert resumable_steps(_record(("a", "c")), "f", steps) == ("a",)
    assert resumable_steps(None, "f", steps) == ()


def test_another_job_or_a_completed_one_skips_nothing() -> None:
    steps = _template("a", "b").get("t").steps
    assert resumable_steps(_record(("a",), fingerprint="g"), "f", steps) == ()
    assert resumable_steps(_record(("a",), ok="ASSEMBLY_COMPLETED"), "f", steps) == ()


def test_resumption_stops_at_a_step_that_opted_out() -> None:
    steps = _template("a", "b", "c", opted_out=("b",)).get("t").steps
    assert resumable_steps(_record(("a", "b", "c")), "f", steps) == ("a",)


def test_an_old_record_without_checkpoints_still_parses() -> None:
    record = _record(("a",))
    text = record.to_json().replace('"checkpoints": [\n    "a"\n  ],', "")
    assert "checkpoints" not in text
    assert AssemblyStatus.from_json(text).checkpoints == ()
