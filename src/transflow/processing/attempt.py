"""One delivery attempt of one job, as values: its states, their transitions, its decisions.

Pure: no AWS, no clock, no logging. The processor (:mod:`transflow.processing.processor`)
performs the effects each value asks for; everything here is tested without an endpoint.

An attempt begins with a status record marked executing (:func:`begin`), decides from the
record a previous delivery left whether to run at all (:func:`previous_verdict`), records its
inputs, enters each step in turn, and ends :func:`finish`-ed: completed, or failed with the
:class:`FailureDecision` that :func:`decide_failure` takes from the exception.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.keys import STATUS_RECORD_NAME, job_output_prefix
from transflow._wire.model import ProcessingJob, S3ObjectRef
from transflow.errors import (
    ConfigError,
    EmptyTemplateError,
    JobCancelledError,
    OutputPathError,
    StepUsageError,
    TemplateNotFoundError,
    ToolError,
    ToolTimeoutError,
    TransflowError,
)
from transflow.processing.context import InputFile, OutputFile
from transflow.processing.status import (
    ASSEMBLY_COMPLETED,
    ASSEMBLY_EXECUTING,
    AssemblyStatus,
    ResultRecord,
    UploadRecord,
    job_fingerprint,
)
from transflow.processing.storage import InputUnavailableError

if TYPE_CHECKING:
    from transflow.processing.templates import Step

__all__ = [
    "Attempt",
    "Conflict",
    "DoneIdentity",
    "FailureDecision",
    "Verdict",
    "begin",
    "complete",
    "completion_conflict",
    "completion_stored",
    "decide_failure",
    "failure_code",
    "previous_verdict",
    "recorded_outputs",
    "replayed_done",
    "result_count",
    "resumable_steps",
]

# Most specific first: the first match names the failure.
_ERROR_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (TemplateNotFoundError, "TEMPLATE_NOT_FOUND"),
    (EmptyTemplateError, "TEMPLATE_HAS_NO_STEPS"),
    (ConfigError, "CONFIGURATION_ERROR"),
    (InputUnavailableError, "INPUT_UNAVAILABLE"),
    (OutputPathError, "OUTPUT_PATH_REFUSED"),
    (ToolTimeoutError, "COMMAND_TIMEOUT"),
    (ToolError, "COMMAND_FAILED"),
    (StepUsageError, "STEP_USAGE_ERROR"),
)
RECORD_MESSAGE_CHARS = 2000
"""How much of a failure's text the status record keeps."""
EVENT_MESSAGE_CHARS = 1000
"""How much of it the ``error`` progress event carries (events share a 256 KiB message)."""


def failure_code(exc: BaseException, step: str | None) -> str:
    """The status record's ``error`` code for a failure."""
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return "STEP_FAILED" if step else "JOB_FAILED"


def result_count(record: AssemblyStatus) -> int:
    """How many outputs a status record lists."""
    return sum(len(results) for results in record.results.values())


class Verdict(enum.Enum):
    """What the record of a previous delivery means for this one."""

    RUN = "run"
    """No completed record: run the job."""
    RERUN_CHANGED = "rerun-changed"
    """The upload completed before, but with another job (more files, other fields): run."""
    REPLAY = "replay"
    """This very job completed before: do not run it again, report its record."""


def previous_verdict(previous: AssemblyStatus | None, fingerprint: str) -> Verdict:
    """Whether a job whose fingerprint is ``fingerprint`` runs, given the stored record."""
    if previous is None or not previous.completed:
        return Verdict.RUN
    if previous.job_fingerprint != fingerprint:
        return Verdict.RERUN_CHANGED
    return Verdict.REPLAY


@attrs.frozen
class DoneIdentity:
    """The identity of a completed job's ``done`` event, which a redelivery of its message
    sends again: its ``seq`` and the attempt token of its deduplication id."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    seq: int
    token: str


def replayed_done(previous: AssemblyStatus, message_id: str | None) -> DoneIdentity | None:
    """For a delivery of message ``message_id`` that finds this very job completed
    (:attr:`Verdict.REPLAY`): the ``done`` to send again when the record was written by a
    delivery of the same message (the first died or its delete failed after the record was
    written: its ``done`` and webhook may not have gone); None for another message with
    the same job (a bridge that sent it again), an unknown message, or a record of an
    older version, which get a ``done`` of their own and no webhook, as before."""
    if message_id is None or previous.message_id != message_id:
        return None
    if previous.done_seq is None or previous.done_token is None:
        return None
    return DoneIdentity(previous.done_seq, previous.done_token)


def resumable_steps(
    previous: AssemblyStatus | None, fingerprint: str, steps: Sequence[Step]
) -> tuple[str, ...]:
    """The steps a delivery of the job ``fingerprint`` need not run again: the longest run
    of the template's first steps that a previous delivery of this very job checkpointed.
    It stops at the first step that opted out (``checkpoint=False``), since the steps after
    it may depend on what it does this time. The caller still checks that their outputs
    exist."""
    if previous is None or previous.completed or previous.job_fingerprint != fingerprint:
        return ()
    done = set(previous.checkpoints)
    skipped: list[str] = []
    for step in steps:
        if not step.checkpoint or step.name not in done:
            break
        skipped.append(step.name)
    return tuple(skipped)


def _results(outputs: Mapping[str, Iterable[OutputFile]]) -> dict[str, tuple[ResultRecord, ...]]:
    return {
        step: tuple(
            ResultRecord(
                o.name, o.bucket, o.key, o.size, o.content_type, o.etag, f"s3://{o.bucket}/{o.key}"
            )
            for o in written
        )
        for step, written in outputs.items()
    }


def recorded_outputs(previous: AssemblyStatus, step: str) -> tuple[OutputFile, ...]:
    """The outputs a previous delivery recorded for ``step``, as the step wrote them."""
    return tuple(
        OutputFile(step, r.name, r.bucket, r.key, r.size, r.content_type, r.etag)
        for r in previous.results.get(step, ())
    )


def completion_stored(stored: AssemblyStatus | None, record: AssemblyStatus) -> bool:
    """Whether ``stored`` (read back after a completion write that seemed to fail) is this
    attempt's completion record: then the job did complete, and failing it now would make
    it run again."""
    return (
        stored is not None
        and stored.completed
        and stored.job_fingerprint == record.job_fingerprint
        and stored.attempt == record.attempt
    )


class Conflict(enum.Enum):
    """What a conditional completion write that was refused (the record changed since this
    attempt wrote it) means, by the record now stored."""

    OURS = "ours"
    """It is this attempt's own completion (a retried PUT whose first answer was lost)."""
    DUPLICATE = "duplicate"
    """Another delivery completed this very job: this one must not complete it again (its
    message is deleted). It sends no ``done`` event and no webhook, unless that delivery
    was of the same message (:func:`replayed_done`): then that delivery's, again."""
    SUPERSEDED = "superseded"
    """Another delivery holds the job (still running, or with another job of the upload):
    this one stops, leaving record, progress and webhook to it."""


def completion_conflict(stored: AssemblyStatus | None, record: AssemblyStatus) -> Conflict:
    """See :class:`Conflict`."""
    if completion_stored(stored, record):
        return Conflict.OURS
    if stored is not None and stored.completed and stored.job_fingerprint == record.job_fingerprint:
        return Conflict.DUPLICATE
    return Conflict.SUPERSEDED


@attrs.frozen
class FailureDecision:
    """What a failed attempt must do: the pure half of failing.

    ``code`` and ``text`` name the failure; ``final`` says no delivery follows (known only
    when the queue's ``max_receive_count`` is given); ``write_record`` is false once the
    completion record may already be stored (overwriting it could make a finished job run
    again); ``send_webhook`` is true once per job: on the last attempt, or on every attempt
    when the last one cannot be told."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    code: str
    text: str
    step: str | None
    attempt: int
    final: bool
    write_record: bool
    send_webhook: bool
    unexpected: bool

    @property
    def retrying(self) -> bool:
        """Whether SQS will deliver the job again (as far as the processor knows)."""
        return not self.final

    @property
    def record_message(self) -> str:
        """The text the status record keeps."""
        return self.text[:RECORD_MESSAGE_CHARS]

    @property
    def event_message(self) -> str:
        """The text the ``error`` event carries."""
        return self.text[:EVENT_MESSAGE_CHARS]


@attrs.frozen
class Attempt:
    """The state of one delivery attempt: its status record, the step it is in, and
    whether the completion record is being written.

    ``bucket`` is where its outputs and record go, once the template is known."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    job: ProcessingJob
    record: AssemblyStatus
    bucket: str | None = None
    step: str | None = None
    completing: bool = False

    @property
    def output_prefix(self) -> str:
        """Where the job's outputs go in the bucket."""
        return job_output_prefix(self.job)

    @property
    def record_key(self) -> str:
        """The key of the job's status record."""
        return self.output_prefix + STATUS_RECORD_NAME

    @property
    def attempt(self) -> int:
        """The delivery this is (1 for the first)."""
        return self.record.attempt

    def verdict(self, previous: AssemblyStatus | None) -> Verdict:
        """See :func:`previous_verdict`."""
        return previous_verdict(previous, self.record.job_fingerprint)

    def located(self, bucket: str) -> Attempt:
        """The attempt once its output bucket is known."""
        return attrs.evolve(self, bucket=bucket)

    def with_inputs(
        self, inputs: Sequence[InputFile], unopened: Sequence[S3ObjectRef] = ()
    ) -> Attempt:
        """The attempt once its steps took ``inputs`` (downloaded) and left ``unopened``
        alone: the record lists both, the unopened ones with the size and type it never
        learned (0 and none)."""
        uploads = tuple(
            UploadRecord(f.name, f.bucket, f.key, f.size, f.etag, f.content_type) for f in inputs
        ) + tuple(
            UploadRecord(r.key.rsplit("/", 1)[-1], r.bucket, r.key, 0, r.etag or "")
            for r in unopened
        )
        record = attrs.evolve(
            self.record, uploads=uploads, bytes_received=sum(f.size for f in inputs)
        )
        return attrs.evolve(self, record=record)

    def entering(self, step: str) -> Attempt:
        """The attempt while ``step`` runs."""
        return attrs.evolve(self, step=step)

    def checkpointed(
        self, steps: Sequence[str], outputs: Mapping[str, Iterable[OutputFile]]
    ) -> Attempt:
        """The attempt once ``steps`` are finished (run now or reused), with every output
        written so far: what a checkpoint write records."""
        results = _results(outputs)
        record = attrs.evolve(
            self.record,
            checkpoints=tuple(steps),
            results=results,
            bytes_output=sum(r.size for rs in results.values() for r in rs),
        )
        return attrs.evolve(self, record=record)

    def steps_done(self) -> Attempt:
        """The attempt once every step ran."""
        return attrs.evolve(self, step=None)

    def completing_with(self, record: AssemblyStatus) -> Attempt:
        """The attempt while its completion record is written."""
        return attrs.evolve(self, record=record, completing=True)

    def failed_with(self, record: AssemblyStatus) -> Attempt:
        """The attempt once it failed."""
        return attrs.evolve(self, record=record)

    def finish(
        self,
        outputs: Mapping[str, Iterable[OutputFile]],
        *,
        ok: str | None,
        duration: float,
        now: str,
        error: str | None = None,
        message: str | None = None,
    ) -> AssemblyStatus:
        """The final status record: ``ok`` (completed) or ``error``/``message`` (failed),
        with the outputs each step wrote and the time the attempt took."""
        results = _results(outputs)
        return attrs.evolve(
            self.record,
            ok=ok,
            error=error,
            message=message,
            step=self.step,
            results=results,
            bytes_output=sum(r.size for rs in results.values() for r in rs),
            execution_duration=round(duration, 3),
            last_updated=now,
        )


def begin(job: ProcessingJob, attempt: int, *, now: str, message_id: str | None = None) -> Attempt:
    """The first state of delivery ``attempt`` of ``job`` (from message ``message_id``, when
    it came in one): its record marked executing."""
    record = AssemblyStatus(
        assembly_id=job.upload_id,
        upload_id=job.upload_id,
        template_id=job.template_id,
        branch=job.branch,
        user=job.user.user_id if job.user else None,
        job_fingerprint=job_fingerprint(job),
        attempt=attempt,
        execution_start=now,
        ok=ASSEMBLY_EXECUTING,
        last_updated=now,
        message_id=message_id,
    )
    return Attempt(job, record)


def complete(
    state: Attempt,
    outputs: Mapping[str, Iterable[OutputFile]],
    *,
    duration: float,
    now: str,
    done: DoneIdentity | None = None,
) -> Attempt:
    """The attempt once every step succeeded, about to write its completion record, which
    keeps the identity of the ``done`` event sent after it (``done``)."""
    record = state.finish(outputs, ok=ASSEMBLY_COMPLETED, duration=duration, now=now)
    if done is not None:
        record = attrs.evolve(record, done_seq=done.seq, done_token=done.token)
    return state.completing_with(record)


def decide_failure(
    exc: BaseException, state: Attempt, *, max_receive_count: int | None
) -> FailureDecision | None:
    """What to do about ``exc`` ending ``state``; None for a cancelled attempt, which must
    leave the record and the progress alone (another delivery may be running the job now)."""
    if isinstance(exc, JobCancelledError):
        return None
    attempt = state.attempt
    final = max_receive_count is not None and attempt >= max_receive_count
    return FailureDecision(
        code=failure_code(exc, state.step),
        text=str(exc) or type(exc).__name__,
        step=state.step,
        attempt=attempt,
        final=final,
        write_record=not state.completing,
        send_webhook=max_receive_count is None or final,
        unexpected=not isinstance(exc, TransflowError),
    )
