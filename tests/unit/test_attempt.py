"""The attempt state machine and the failure decision: pure values, no AWS."""

from __future__ import annotations

import json
import time
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import (
    EmptyTemplateError,
    JobCancelledError,
    OutputFile,
    ProcessingJob,
    S3ObjectRef,
    StepUsageError,
    ToolTimeoutError,
)
from transflow._aws.poller import Delivery
from transflow._wire.messages import ReceivedMessage
from transflow.processing import attempt as attempts
from transflow.processing.attempt import Verdict, decide_failure
from transflow.processing.context import InputFile
from transflow.processing.status import AssemblyStatus, ResultRecord, UploadRecord
from transflow.processing.storage import InputUnavailableError

JOB = ProcessingJob(
    upload_id="up-1",
    template_id="audio",
    objects=(S3ObjectRef("in", "uploads/main/up-1/a.wav"),),
    branch="main",
)
NOW = "2026-11-28T10:00:00.000Z"


def _started(attempt: int = 1) -> attempts.Attempt:
    return attempts.begin(JOB, attempt, now=NOW).located("out")


def test_begin_marks_the_record_executing() -> None:
    state = _started(2)
    assert state.record.ok == "ASSEMBLY_EXECUTING"
    assert state.record.attempt == 2
    assert state.record.execution_start == NOW
    assert state.record_key == "outputs/main/up-1/status.json"
    assert state.bucket == "out"
    assert not state.completing


def test_a_previous_record_decides_whether_to_run() -> None:
    state = _started()
    done = attempts.complete(state, {}, duration=1.0, now=NOW).record
    assert state.verdict(None) is Verdict.RUN
    assert state.verdict(state.record) is Verdict.RUN  # executing, not completed
    assert state.verdict(done) is Verdict.REPLAY
    other = ProcessingJob("up-1", "audio", (S3ObjectRef("in", "k2"),), "main")
    assert attempts.begin(other, 1, now=NOW).verdict(done) is Verdict.RERUN_CHANGED


def test_a_run_lists_inputs_outputs_and_completes() -> None:
    inputs = [InputFile(Path("/tmp/a"), "a.wav", "in", "k", 10, "e", "audio/wav")]
    state = _started().with_inputs(inputs).entering("encode")
    assert state.step == "encode"
    outputs = {"encode": [OutputFile("encode", "a.mp3", "out", "o/a.mp3", 4, "audio/mpeg", "t")]}
    done = attempts.complete(state.steps_done(), outputs, duration=1.23456, now="later")
    record = done.record
    assert done.completing
    assert record.completed
    assert record.step is None
    assert record.uploads == (UploadRecord("a.wav", "in", "k", 10, "e", "audio/wav"),)
    assert record.bytes_received == 10
    assert record.results == {
        "encode": (
            ResultRecord("a.mp3", "out", "o/a.mp3", 4, "audio/mpeg", "t", "s3://out/o/a.mp3"),
        )
    }
    assert record.bytes_output == 4
    assert record.execution_duration == 1.235
    assert record.last_updated == "later"
    assert attempts.result_count(record) == 1


def test_completion_is_confirmed_only_by_this_attempts_record() -> None:
    done = attempts.complete(_started(2), {}, duration=0, now=NOW).record
    assert attempts.completion_stored(done, done)
    assert not attempts.completion_stored(None, done)
    assert not attempts.completion_stored(_started(2).record, done)
    earlier = attempts.complete(_started(1), {}, duration=0, now=NOW).record
    assert not attempts.completion_stored(earlier, done)


@pytest.mark.parametrize(
    ("exc", "step", "code"),
    [
        (EmptyTemplateError("audio"), None, "TEMPLATE_HAS_NO_STEPS"),
        (InputUnavailableError("gone"), None, "INPUT_UNAVAILABLE"),
        (ToolTimeoutError(["ffmpeg"], 1, ""), "encode", "COMMAND_TIMEOUT"),
        (StepUsageError("bad"), "encode", "STEP_USAGE_ERROR"),
        (RuntimeError(), "encode", "STEP_FAILED"),
        (RuntimeError("x"), None, "JOB_FAILED"),
    ],
)
def test_errors_have_codes(exc: Exception, step: str | None, code: str) -> None:
    state = _started() if step is None else _started().entering(step)
    decision = decide_failure(exc, state, max_receive_count=None)
    assert decision is not None
    assert decision.code == code
    assert decision.step == step
    assert decision.text == (str(exc) or type(exc).__name__)


def test_a_cancelled_attempt_touches_nothing() -> None:
    cancel = JobCancelledError("up-1", "encode")
    assert decide_failure(cancel, _started(), max_receive_count=3) is None


@given(
    attempt=st.integers(1, 20),
    limit=st.none() | st.integers(1, 20),
    completing=st.booleans(),
    text=st.text(max_size=3000),
)
def test_failure_decisions(attempt: int, limit: int | None, completing: bool, text: str) -> None:
    state = _started(attempt)
    if completing:
        state = attempts.complete(state, {}, duration=0, now=NOW)
    decision = decide_failure(RuntimeError(text), state, max_receive_count=limit)
    assert decision is not None
    final = limit is not None and attempt >= limit
    assert decision.final is final
    assert decision.retrying is not final
    # One webhook per job: on the last attempt, or on each when the last cannot be told.
    assert decision.send_webhook is (limit is None or final)
    # A completion record that may be stored is never overwritten with an error.
    assert decision.write_record is not completing
    assert decision.unexpected
    assert len(decision.record_message) <= attempts.RECORD_MESSAGE_CHARS
    assert len(decision.event_message) <= attempts.EVENT_MESSAGE_CHARS
    failed = state.finish(
        {}, ok=None, error=decision.code, message=decision.record_message, duration=0, now=NOW
    )
    assert not failed.completed


def test_the_record_keeps_transloadits_mime_key() -> None:
    record = attempts.complete(
        _started().with_inputs([InputFile(Path("/a"), "a", "in", "k", 1, "", "audio/wav")]),
        {"s": [OutputFile("s", "o", "out", "k2", 1, "text/plain")]},
        duration=0,
        now=NOW,
    ).record
    data = json.loads(record.to_json())
    assert data["uploads"][0]["mime"] == "audio/wav"
    assert data["results"]["s"][0]["mime"] == "text/plain"
    assert "content_type" not in data["uploads"][0]
    assert AssemblyStatus.from_json(record.to_json()) == record


def test_a_refused_completion_write_is_ours_a_duplicate_or_superseded() -> None:
    mine = attempts.complete(_started(1), {}, duration=0, now=NOW).record
    other_done = attempts.complete(_started(2), {}, duration=0, now=NOW).record
    other_job = attrs.evolve(other_done, job_fingerprint="another-job")
    assert attempts.completion_conflict(mine, mine) is attempts.Conflict.OURS
    assert attempts.completion_conflict(other_done, mine) is attempts.Conflict.DUPLICATE
    assert attempts.completion_conflict(other_job, mine) is attempts.Conflict.SUPERSEDED
    running = _started(2).record
    assert attempts.completion_conflict(running, mine) is attempts.Conflict.SUPERSEDED
    assert attempts.completion_conflict(None, mine) is attempts.Conflict.SUPERSEDED


def test_a_lease_is_held_until_its_confirmed_visibility_runs_out() -> None:
    message = ReceivedMessage("m", "rh", "{}")
    assert Delivery(message).lease_held()  # no poller keeps it: nothing to doubt
    now = time.monotonic()
    assert Delivery(message, lease_expires=now + 60).lease_held()
    assert not Delivery(message, lease_expires=now + 0.5).lease_held()  # within the margin
    assert not Delivery(message, lease_expires=now - 1).lease_held()
    lost = Delivery(message, lease_expires=now + 60)
    lost.cancelled.set()
    assert not lost.lease_held()
