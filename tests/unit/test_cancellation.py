"""Cancelling an upload: the pure decisions, and a browser's bad requests refused with a
typed error before any request (the unit conftest fails a test that opens a connection)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.strategies import scalars
from transflow import (
    CancelOutcome,
    CancelRefusedError,
    ProgressEvent,
    ProgressType,
    cancel_request,
    issue_stream_token,
)
from transflow._wire.cancelmark import ASSEMBLY_CANCELED, is_canceled_record
from transflow.processing.cancellation import cancel_decision, canceled_record
from transflow.processing.status import ASSEMBLY_COMPLETED, ASSEMBLY_EXECUTING, AssemblyStatus
from transflow.streaming.snapshot import UploadState, UploadStatus, fold_event

SECRET = "k" * 24 + "Zq9-Xw7_Lm3/Pr5+"
NOW = "2026-12-04T10:00:00.000Z"


def record(ok: str | None, error: str | None = None) -> AssemblyStatus:
    return AssemblyStatus(
        assembly_id="up-1",
        upload_id="up-1",
        template_id="t",
        branch="main",
        user=None,
        job_fingerprint="f",
        attempt=1,
        execution_start=NOW,
        ok=ok,
        error=error,
    )


@pytest.mark.parametrize(
    ("stored", "outcome"),
    [
        (None, CancelOutcome.CANCELED),
        (record(ASSEMBLY_EXECUTING), CancelOutcome.CANCELED),
        (record(None, "STEP_FAILED"), CancelOutcome.CANCELED),
        (record(ASSEMBLY_CANCELED), CancelOutcome.ALREADY_CANCELED),
        (record(ASSEMBLY_COMPLETED), CancelOutcome.TOO_LATE),
    ],
)
def test_what_cancelling_does_to_each_record(
    stored: AssemblyStatus | None, outcome: CancelOutcome
) -> None:
    assert cancel_decision(stored) is outcome


def test_the_cancelled_record_keeps_what_the_job_did() -> None:
    stored = attrs.evolve(record(None, "STEP_FAILED"), checkpoints=("one",))
    marked = canceled_record(
        stored, branch="main", upload_id="up-1", user_id=None, now=NOW, delete_outputs=True
    )
    fresh = canceled_record(None, branch="main", upload_id="up-1", user_id="u", now=NOW)

    assert (marked.ok, marked.error, marked.checkpoints) == (ASSEMBLY_CANCELED, None, ("one",))
    assert marked.canceled
    assert not marked.completed
    assert marked.delete_outputs
    assert (fresh.ok, fresh.user, fresh.attempt) == (ASSEMBLY_CANCELED, "u", 0)
    assert is_canceled_record(marked.to_json())
    assert not is_canceled_record(record(ASSEMBLY_COMPLETED).to_json())
    assert not is_canceled_record(b"\xff not json")
    assert AssemblyStatus.from_json(marked.to_json()) == marked


def test_a_cancelled_event_ends_the_upload_for_subscribers() -> None:
    wire = {"channel": "upload:main:up-1", "uploadId": "up-1", "branch": "main"}
    event = ProgressEvent.from_json(json.dumps({**wire, "timestamp": NOW, "type": "cancelled"}))
    folded = fold_event(UploadStatus("upload:main:up-1"), event)

    assert ProgressType.CANCELLED.terminal
    assert folded.state is UploadState.CANCELLED


class NoS3:
    """Any use is a failure: a refused request must not reach S3."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 used ({name}) for a request that must be refused")


GOOD = issue_stream_token(SECRET, "upload:main:up-1", user_id="u")
tokens = st.sampled_from([GOOD, GOOD[:-1] + "A", GOOD + ".", ""]) | scalars | st.text()
ids = scalars | st.text() | st.sampled_from(["up-1", "../up-1", "up-1/x", "a" * 200, ".x"])
branches = scalars | st.sampled_from(["main", "Main", "feat/x", "", "main:*"])


@settings(max_examples=300, deadline=None)
@given(branch=branches, upload_id=ids, token=tokens)
def test_a_bad_request_is_refused_with_a_typed_error(
    branch: object, upload_id: object, token: object
) -> None:
    if (branch, upload_id, token) == ("main", "up-1", GOOD):
        return  # the one request that may cancel
    with pytest.raises(CancelRefusedError) as refused:
        cancel_request(
            NoS3(),  # type: ignore[arg-type]
            bucket="outputs",
            branch=branch,
            upload_id=upload_id,
            token=token,
            secret=SECRET,
        )
    assert refused.value.status in (400, 401, 403)
    assert str(refused.value)
