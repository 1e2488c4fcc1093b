"""The status of an upload, folded from its progress events: what a new subscriber sees first.

A browser that connects in the middle of an upload (or reconnects after its replay window
has passed) must not show an empty progress bar; the hub keeps one :class:`UploadStatus` per
channel, folded from every event it dispatched, and sends it as the ``snapshot`` event.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import json

import attrs

from transflow._wire.model import ProgressEvent, ProgressType, converter

__all__ = ["OutputSeen", "StepStatus", "UploadState", "UploadStatus", "fold_event"]


class UploadState(str, enum.Enum):
    """Where an upload is: the wire strings of the snapshot's ``state``."""

    QUEUED = "queued"  # nothing heard yet: the job waits on the processing queue
    PROCESSING = "processing"
    RETRYING = "retrying"  # an attempt failed; SQS will deliver the job again
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class StepStatus:
    """One step of the upload's template as far as its events told."""

    name: str
    state: str = "running"  # running | done | error
    percent: float | None = None


@attrs.frozen
class OutputSeen:
    """A file a step wrote, as its ``output`` event told subscribers (not the step's own
    :class:`~transflow.processing.context.OutputFile`, which holds the local path)."""

    key: str
    name: str | None = None
    bucket: str | None = None
    step: str | None = None


@attrs.frozen
class UploadStatus:
    """The folded status of one upload's channel."""

    channel: str
    upload_id: str | None = None
    branch: str | None = None
    state: UploadState = UploadState.QUEUED
    template_id: str | None = None
    steps: tuple[StepStatus, ...] = ()
    percent: float | None = None
    outputs: tuple[OutputSeen, ...] = ()
    error: str | None = None
    last_event_id: str | None = None
    last_seq: int | None = None
    updated_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, object]:
        """The wire dictionary (camelCase, absent optionals omitted)."""
        data: dict[str, object] = converter.unstructure(self)
        data["state"] = self.state.value  # always present, even at its default
        return data

    def to_json(self) -> str:
        """Compact JSON, the data of the SSE ``snapshot`` event."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def _with_step(
    steps: tuple[StepStatus, ...], name: str, state: str | None, percent: float | None
) -> tuple[StepStatus, ...]:
    found = False
    out: list[StepStatus] = []
    for step in steps:
        if step.name == name:
            found = True
            out.append(
                attrs.evolve(
                    step,
                    state=state or step.state,
                    percent=percent if percent is not None else step.percent,
                )
            )
        else:
            out.append(step)
    if not found:
        out.append(StepStatus(name, state or "running", percent))
    return tuple(out)


def _later(event: ProgressEvent, status: UploadStatus) -> bool:
    return event.seq is not None and status.last_seq is not None and event.seq > status.last_seq


def fold_event(status: UploadStatus, event: ProgressEvent) -> UploadStatus:  # noqa: PLR0912
    """The status after ``event``. Terminal states stick: a late ``progress`` after ``done``
    (a redelivered message) does not reopen a finished upload; only the ``start`` of a new
    run, with a higher ``seq``, does."""
    changes: dict[str, object] = {
        "upload_id": event.upload_id,
        "branch": event.branch,
        "updated_at": event.timestamp,
    }
    if event.seq is not None:
        changes["last_seq"] = event.seq
        changes["last_event_id"] = event.event_id
    if event.template_id is not None:
        changes["template_id"] = event.template_id
    finished = status.state in (UploadState.COMPLETED, UploadState.ERROR, UploadState.CANCELLED)
    kind = event.type
    if kind is ProgressType.START and finished and _later(event, status):
        # A new run of a finished upload (redriven from the dead-letter queue, or a new job
        # for it): its seq is past everything seen, so it is no late duplicate.
        status = UploadStatus(status.channel)
        finished = False
    if kind is ProgressType.START and not finished:
        changes["state"] = UploadState.PROCESSING
    elif kind is ProgressType.STEP_START and event.step:
        changes["steps"] = _with_step(status.steps, event.step, "running", None)
    elif kind is ProgressType.PROGRESS:
        if event.step:
            changes["steps"] = _with_step(status.steps, event.step, None, event.percent)
        if event.percent is not None and not finished:
            changes["percent"] = event.percent
    elif kind is ProgressType.STEP_DONE and event.step:
        changes["steps"] = _with_step(status.steps, event.step, "done", 100)
    elif kind is ProgressType.OUTPUT and event.key:
        output = OutputSeen(event.key, event.name, event.bucket, event.step)
        if output not in status.outputs:
            changes["outputs"] = (*status.outputs, output)
    elif kind is ProgressType.DONE:
        changes["state"] = UploadState.COMPLETED
        changes["percent"] = 100
    elif kind is ProgressType.CANCELLED:
        changes["state"] = UploadState.CANCELLED
    elif kind is ProgressType.ERROR and event.extra.get("retrying") is True and not finished:
        # Not the end: the job goes back through visibility and runs again.
        changes["state"] = UploadState.RETRYING
        changes["error"] = event.message or "attempt failed"
    elif kind is ProgressType.ERROR:
        changes["state"] = UploadState.ERROR
        changes["error"] = event.message or "processing failed"
        if event.step:
            changes["steps"] = _with_step(status.steps, event.step, "error", None)
    if kind in (ProgressType.STEP_START, ProgressType.PROGRESS, ProgressType.OUTPUT) and (
        status.state is UploadState.QUEUED
    ):
        changes["state"] = UploadState.PROCESSING  # the start event may have been missed
    return attrs.evolve(status, **changes)  # type: ignore[arg-type]
