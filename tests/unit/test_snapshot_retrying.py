"""The folded upload status across a failed attempt and its retry."""

from __future__ import annotations

from transflow import ProgressEvent
from transflow.streaming.snapshot import UploadState, UploadStatus, fold_event


def event(kind: str, seq: int, **extra: object) -> ProgressEvent:
    return ProgressEvent.create(kind, upload_id="u1", branch="main", seq=seq, extra=extra)


def fold(*events: ProgressEvent) -> UploadStatus:
    status = UploadStatus("upload:main:u1")
    for item in events:
        status = fold_event(status, item)
    return status


def test_a_failed_attempt_that_will_be_retried_is_not_the_end() -> None:
    status = fold(event("start", 0), event("error", 1, retrying=True, attempt=1))
    assert status.state is UploadState.RETRYING
    status = fold_event(status, event("start", 1_000_000))
    assert status.state is UploadState.PROCESSING
    status = fold_event(status, event("done", 1_000_001))
    assert status.state is UploadState.COMPLETED


def test_the_last_failed_attempt_is_final_until_a_new_run_starts() -> None:
    status = fold(event("start", 10), event("error", 11, retrying=False, attempt=3))
    assert status.state is UploadState.ERROR
    # A late copy of an old event does not reopen it...
    assert fold_event(status, event("start", 10)).state is UploadState.ERROR
    assert fold_event(status, event("progress", 12)).state is UploadState.ERROR
    # ...the start of a new run (a redrive from the dead-letter queue) does.
    rerun = fold_event(status, event("start", 20))
    assert rerun.state is UploadState.PROCESSING
    assert rerun.error is None
    assert fold_event(rerun, event("done", 21)).state is UploadState.COMPLETED
