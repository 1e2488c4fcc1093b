"""The job processor: runs jobs from the processing queue through their templates.

:meth:`JobProcessor.handle` is a Lambda handler for the SQS event source with
ReportBatchItemFailures; :meth:`JobProcessor.process` runs one received message and is what
the long-running worker (:mod:`transflow._aws.poller`) calls; :meth:`JobProcessor.run_job` runs a
parsed job.

A job: read the status record (a finished job is not run again), mark it executing, download
the inputs into a temporary directory, run the steps in order with a :class:`StepContext`,
write the status record, publish ``done`` (or ``error``), POST the webhook. A failure raises
:class:`JobFailedError`, so the message returns through its visibility timeout and the
queue's redrive policy dead-letters it after ``maxReceiveCount`` deliveries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypedDict

import attrs

from transflow._aws.claimcheck import ClaimCheck, decode_job_message, load_claimed_job
from transflow._aws.emf import emit
from transflow._aws.retry import RetryPolicy
from transflow._wire.keys import STATUS_RECORD_NAME, job_output_prefix
from transflow._wire.limits import MAX_MESSAGE_BYTES
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProcessingJob, ProgressType
from transflow.errors import (
    BatchFailedError,
    CommandError,
    CommandTimeoutError,
    ConfigError,
    EmptyTemplateError,
    EventFormatError,
    JobCancelledError,
    JobFailedError,
    JobFormatError,
    OutputPathError,
    StepUsageError,
    TemplateNotFoundError,
    TransflowError,
)
from transflow.processing.context import InputFile, OutputFile, OutputLocation, StepContext
from transflow.processing.progress import ProgressPublisher, ProgressStream
from transflow.processing.status import (
    ASSEMBLY_COMPLETED,
    ASSEMBLY_EXECUTING,
    AssemblyStatus,
    ResultRecord,
    UploadRecord,
    job_fingerprint,
    load_status,
    now_text,
    save_status,
    status_dict,
)
from transflow.processing.templates import Template, TemplateRegistry
from transflow.processing.webhooks import WebhookSender

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "BatchGate",
    "BatchItemFailure",
    "BatchResponse",
    "JobProcessor",
    "LambdaContext",
    "error_code",
    "local_input_name",
]

log = logging.getLogger(__name__)

# Files up to this size go up in one PutObject (which returns the ETag); larger ones as a
# multipart upload.
SINGLE_PUT_BYTES = 64 * 1024 * 1024
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+=@,-]+")


class LambdaContext(Protocol):
    """The part of the Lambda context object the processor uses."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


class BatchItemFailure(TypedDict):
    """One failed record, by its SQS message id."""

    itemIdentifier: str


class BatchResponse(TypedDict):
    """The response Lambda's ReportBatchItemFailures expects."""

    batchItemFailures: list[BatchItemFailure]


class _InputError(TransflowError):
    """An input could not be downloaded."""


# Most specific first: the first match names the failure.
_ERROR_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (TemplateNotFoundError, "TEMPLATE_NOT_FOUND"),
    (EmptyTemplateError, "TEMPLATE_HAS_NO_STEPS"),
    (ConfigError, "CONFIGURATION_ERROR"),
    (_InputError, "INPUT_UNAVAILABLE"),
    (OutputPathError, "OUTPUT_PATH_REFUSED"),
    (CommandTimeoutError, "COMMAND_TIMEOUT"),
    (CommandError, "COMMAND_FAILED"),
    (StepUsageError, "STEP_USAGE_ERROR"),
)


# -- decisions ----------------------------------------------------------------------------


@attrs.define
class BatchGate:
    """Which records of one Lambda batch may still run.

    A FIFO group whose job failed runs nothing more in this batch (its later messages would
    overtake the failed one); once time runs short nothing more starts. Made afresh for every
    batch, so no group state outlives an invocation."""

    time_margin: float
    failed_groups: set[str] = attrs.field(factory=set)
    out_of_time: bool = False

    def refuse(self, message: ReceivedMessage, remaining: float | None) -> str | None:
        """Why ``message`` must not run now, or None when it may."""
        if self.out_of_time:
            return "an earlier record found too little Lambda time left"
        if message.group_id is not None and message.group_id in self.failed_groups:
            return f"an earlier message of group {message.group_id!r} failed in this batch"
        if remaining is not None and remaining < self.time_margin:
            self.out_of_time = True
            return (
                f"only {remaining:.1f} s of Lambda time left, below the "
                f"{self.time_margin:g} s margin"
            )
        return None

    def failed(self, message: ReceivedMessage) -> None:
        """Record that ``message`` failed (or was not run)."""
        if message.group_id is not None:
            self.failed_groups.add(message.group_id)


def error_code(exc: BaseException, step: str | None) -> str:
    """The status record's ``error`` code for a failure."""
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return "STEP_FAILED" if step else "JOB_FAILED"


def local_input_name(key: str, taken: set[str]) -> str:
    """A safe, unique file name for the input at ``key``, keeping its base name and
    extension readable (``a.wav``, then ``a-1.wav`` for a second ``a.wav``)."""
    base = _UNSAFE_NAME.sub("_", key.rsplit("/", 1)[-1]).lstrip(".")[:200] or "input"
    stem, dot, ext = base.rpartition(".")
    if not stem:
        stem, dot, ext = base, "", ""
    name, n = base, 0
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}{dot}{ext}"
    taken.add(name.lower())
    return name


# -- one job ------------------------------------------------------------------------------


@attrs.define(eq=False)
class _JobRun:
    """The runtime of one job for its step contexts (see :class:`~.context.JobRuntime`)."""

    s3: S3Client
    stream: ProgressStream
    deadline: Callable[[], float] | None
    results: dict[str, list[OutputFile]] = attrs.field(factory=dict)

    def emit(self, type: ProgressType, fields: Mapping[str, Any]) -> None:
        self.stream.emit(type, **fields)

    def store_output(self, local_path: Path, bucket: str, key: str, content_type: str) -> str:
        if local_path.stat().st_size <= SINGLE_PUT_BYTES:
            with local_path.open("rb") as body:
                response = self.s3.put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType=content_type
                )
            return response.get("ETag", "").strip('"')
        self.s3.upload_file(str(local_path), bucket, key, ExtraArgs={"ContentType": content_type})
        return ""

    def record_output(self, output: OutputFile) -> None:
        self.results.setdefault(output.step, []).append(output)

    def remaining_time(self) -> float:
        return self.deadline() if self.deadline is not None else math.inf


def _attempt_token(message: ReceivedMessage) -> str:
    if "ApproximateReceiveCount" in message.attributes:
        return str(message.receive_count)
    # No count (ReceiveMessage without system attributes): the receipt handle is unique per
    # delivery and stable while one delivery retries its sends, which is what dedup needs.
    return "r" + hashlib.sha256(message.receipt_handle.encode()).hexdigest()[:16]


@attrs.define
class JobProcessor:
    """Runs processing jobs through the templates of ``registry``.

    ``output_bucket`` is used for templates that do not name their own. ``time_margin`` is
    the Lambda time (seconds) below which no new job starts. ``max_receive_count`` (the
    queue's redrive setting), when given, lets the processor tell the last attempt from a
    retry: the error webhook is sent only once, on the last attempt. ``raise_on_total_failure``
    makes :meth:`handle` raise :class:`BatchFailedError` when every record failed.
    """

    registry: TemplateRegistry
    s3_client: S3Client = attrs.field(kw_only=True)
    sqs_client: SQSClient = attrs.field(kw_only=True)
    progress_queue_url: str = attrs.field(kw_only=True)
    output_bucket: str | None = attrs.field(default=None, kw_only=True)
    time_margin: float = attrs.field(default=30.0, kw_only=True)
    max_receive_count: int | None = attrs.field(default=None, kw_only=True)
    raise_on_total_failure: bool = attrs.field(default=False, kw_only=True)
    flush_after: float = attrs.field(default=0.5, kw_only=True)
    max_message_bytes: int = attrs.field(default=MAX_MESSAGE_BYTES, kw_only=True)
    work_dir: str | None = attrs.field(default=None, kw_only=True)
    retry_policy: RetryPolicy = attrs.field(factory=RetryPolicy, kw_only=True)
    webhooks: WebhookSender = attrs.field(factory=WebhookSender, kw_only=True)
    # Fan-out mode (sqs.progressFanout "sns"): progress goes to the SNS FIFO topic instead.
    progress_topic_arn: str | None = attrs.field(default=None, kw_only=True)
    sns_client: SNSClient | None = attrs.field(default=None, kw_only=True)
    publisher: ProgressPublisher = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.publisher = ProgressPublisher(
            self.sqs_client,
            self.progress_queue_url,
            flush_after=self.flush_after,
            max_bytes=self.max_message_bytes,
            policy=self.retry_policy,
            topic_arn=self.progress_topic_arn,
            sns=self.sns_client,
        )
        homeless = [t.template_id for t in self.registry if not self._bucket_of(t)]
        if homeless:
            raise ConfigError(
                f"templates {homeless} have no output_bucket and the processor has none: pass "
                "output_bucket= to JobProcessor or to registry.template(...)"
            )

    def _bucket_of(self, template: Template) -> str | None:
        return template.output_bucket or self.output_bucket

    # -- Lambda -----------------------------------------------------------------------------

    def handle(
        self, event: Mapping[str, Any], context: LambdaContext | None = None
    ) -> BatchResponse:
        """Lambda handler for an SQS event (enable ReportBatchItemFailures on the mapping).

        Returns the failed records; a record that is not run because its group failed or
        time ran short is reported failed too, so SQS delivers it again."""
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            raise EventFormatError(
                "Lambda SQS event",
                ["Records: required array; is the function wired to an SQS event source?"],
            )
        remaining: Callable[[], float] | None = None
        if context is not None:
            remaining = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
        gate = BatchGate(self.time_margin)
        failures: list[BatchItemFailure] = []
        for record in records:
            message = ReceivedMessage.from_lambda_record(
                record if isinstance(record, Mapping) else {}
            )
            reason = gate.refuse(message, remaining() if remaining else None)
            if reason is None:
                try:
                    self.process(message, remaining_time=remaining)
                    continue
                except Exception as exc:  # any failure is this record's, never the batch's
                    if not isinstance(exc, TransflowError):
                        log.exception("message %s failed unexpectedly", message.message_id)
            else:
                log.warning(
                    "message %s (group %s) not run, reported failed: %s",
                    message.message_id,
                    message.group_id,
                    reason,
                )
            gate.failed(message)
            failures.append({"itemIdentifier": message.message_id})
        if self.raise_on_total_failure and records and len(failures) == len(records):
            raise BatchFailedError(f["itemIdentifier"] for f in failures)
        return {"batchItemFailures": failures}

    # -- one message ----------------------------------------------------------------------

    def process(
        self,
        message: ReceivedMessage,
        *,
        remaining_time: Callable[[], float] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """Run the job of one received message. Returns on success (delete the message);
        raises a :class:`TransflowError` on failure (let the message become visible again).

        ``cancelled`` is asked before each step and before the job is marked completed: a
        worker that gave up on this delivery (its heartbeat stopped, so another worker may
        hold the message now) must not complete the job a second time."""
        try:
            decoded = decode_job_message(message.body)
        except JobFormatError as exc:
            log.warning(
                "message %s (group %s, delivery %d) is not a processing job and fails: %s",
                message.message_id,
                message.group_id,
                message.receive_count,
                exc,
            )
            raise
        if isinstance(decoded, ClaimCheck):
            decoded = self._resolve_claim(message, decoded)
        self.run_job(
            decoded,
            attempt=message.receive_count,
            attempt_token=_attempt_token(message),
            remaining_time=remaining_time,
            cancelled=cancelled,
        )

    def _resolve_claim(self, message: ReceivedMessage, claim: ClaimCheck) -> ProcessingJob:
        try:
            return load_claimed_job(self.s3_client, claim)
        except JobFormatError as exc:
            log.warning(
                "message %s: the claimed job at s3://%s/%s is malformed: %s",
                message.message_id,
                claim.bucket,
                claim.key,
                exc,
            )
            raise
        except Exception as exc:
            log.warning(
                "message %s: cannot read the claimed job at s3://%s/%s: %s",
                message.message_id,
                claim.bucket,
                claim.key,
                exc,
            )
            raise JobFailedError(
                claim.upload_id,
                f"the claim check s3://{claim.bucket}/{claim.key} cannot be read ({exc})",
                code="CLAIM_CHECK_UNAVAILABLE",
            ) from exc

    # -- one job --------------------------------------------------------------------------

    def run_job(
        self,
        job: ProcessingJob,
        *,
        attempt: int = 1,
        attempt_token: str | None = None,
        remaining_time: Callable[[], float] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> AssemblyStatus:
        """Run ``job`` (delivery ``attempt``, 1 for the first). Returns its status record;
        raises :class:`JobFailedError` when it fails, :class:`JobCancelledError` when
        ``cancelled()`` turned true before it completed."""
        stream = self.publisher.stream(
            job.upload_id, job.branch, attempt=attempt, attempt_token=attempt_token
        )
        with stream:
            run = _Attempt(
                self,
                job,
                stream,
                _JobRun(self.s3_client, stream, remaining_time),
                _new_status(job, attempt),
                cancelled=cancelled or _never,
            )
            try:
                status = run.run()
            except JobFailedError:
                _job_metrics(job, ok=False, started=run.started)
                raise
            _job_metrics(job, ok=True, started=run.started)
            return status

    def resolve_bucket(self, template: Template) -> str:
        """The output bucket of a template's jobs; raises :class:`ConfigError` if none."""
        bucket = self._bucket_of(template)
        if bucket is None:
            raise ConfigError(
                f"template {template.template_id!r} has no output_bucket and the processor "
                "has none: pass output_bucket= to JobProcessor or registry.template(...)"
            )
        return bucket

    def deliver_webhook(self, template: Template | None, status: AssemblyStatus) -> None:
        """POST the status record to the template's webhook, if it has one; never raises."""
        if template is None or not template.webhook_url:
            return
        body = json.dumps(status_dict(status), separators=(",", ":"), ensure_ascii=False)
        try:
            self.webhooks.deliver(
                template.webhook_url, body.encode("utf-8"), template.webhook_secret
            )
        except Exception:  # a webhook never fails the job
            log.exception("webhook of upload %s raised", status.upload_id)


def _new_status(job: ProcessingJob, attempt: int) -> AssemblyStatus:
    started_at = now_text()
    return AssemblyStatus(
        assembly_id=job.upload_id,
        upload_id=job.upload_id,
        template_id=job.template_id,
        branch=job.branch,
        user=job.user.user_id if job.user else None,
        job_fingerprint=job_fingerprint(job),
        attempt=attempt,
        execution_start=started_at,
        ok=ASSEMBLY_EXECUTING,
        last_updated=started_at,
    )


def _result_count(status: AssemblyStatus) -> int:
    return sum(len(results) for results in status.results.values())


@attrs.define(eq=False)
class _Attempt:
    """One delivery attempt of one job, from the status check to the last event."""

    processor: JobProcessor
    job: ProcessingJob
    stream: ProgressStream
    runtime: _JobRun
    status: AssemblyStatus
    template: Template | None = None
    bucket: str | None = None
    step: str | None = None
    started: float = attrs.field(factory=time.monotonic)
    cancelled: Callable[[], bool] = attrs.field(default=lambda: False, kw_only=True)
    completing: bool = False

    @property
    def s3(self) -> S3Client:
        return self.processor.s3_client

    @property
    def prefix(self) -> str:
        return job_output_prefix(self.job)

    @property
    def status_key(self) -> str:
        return self.prefix + STATUS_RECORD_NAME

    def run(self) -> AssemblyStatus:
        try:
            self.template = self.processor.registry.get(self.job.template_id)
            self.bucket = self.processor.resolve_bucket(self.template)
            previous = load_status(self.s3, self.bucket, self.status_key)
            if self._already_done(previous):
                assert previous is not None
                self.stream.emit(
                    ProgressType.DONE,
                    template_id=self.job.template_id,
                    extra={"replayed": True, "results": _result_count(previous)},
                )
                return previous
            self._execute(self.template, self.bucket)
        except Exception as exc:
            self._fail(exc)
        self.stream.emit(
            ProgressType.DONE,
            template_id=self.job.template_id,
            extra={"results": _result_count(self.status)},
        )
        self.stream.flush()  # the browser hears of it before the webhook is posted
        self.processor.deliver_webhook(self.template, self.status)
        return self.status

    def _already_done(self, previous: AssemblyStatus | None) -> bool:
        if previous is None or not previous.completed:
            return False
        if previous.job_fingerprint != self.status.job_fingerprint:
            log.info(
                "upload %s completed before with another job; running this one",
                self.job.upload_id,
            )
            return False
        log.info(
            "upload %s already completed (attempt %d); not running it again",
            self.job.upload_id,
            previous.attempt,
        )
        return True

    def _execute(self, template: Template, bucket: str) -> None:
        if not template.steps:
            raise EmptyTemplateError(template.template_id)
        save_status(self.s3, bucket, self.status_key, self.status)
        self.stream.emit(
            ProgressType.START,
            template_id=self.job.template_id,
            key=self.job.objects[0].key,
            extra={"attempt": self.status.attempt, "objects": len(self.job.objects)},
        )
        with tempfile.TemporaryDirectory(prefix="transflow-", dir=self.processor.work_dir) as tmp:
            work_dir = Path(tmp)
            inputs = _download(self.s3, self.job, work_dir / "inputs")
            self.status = attrs.evolve(
                self.status,
                uploads=tuple(
                    UploadRecord(f.name, f.bucket, f.key, f.size, f.etag, f.content_type)
                    for f in inputs
                ),
                bytes_received=sum(f.size for f in inputs),
            )
            location = OutputLocation(bucket, self.prefix)
            for step in template.steps:
                self._check_cancelled()
                self.step = step.name
                self.stream.emit(ProgressType.STEP_START, step=step.name)
                step.func(
                    StepContext(
                        self.job,
                        template.template_id,
                        step.name,
                        inputs,
                        work_dir,
                        location,
                        self.status.attempt,
                        self.runtime,
                    )
                )
                self.stream.emit(ProgressType.STEP_DONE, step=step.name)
            self.step = None
        self._check_cancelled()
        self.status = self._finish(ok=ASSEMBLY_COMPLETED)
        self._save_completed(bucket)

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelledError(self.job.upload_id, self.step)

    def _save_completed(self, bucket: str) -> None:
        """Write the completion marker. A PUT whose answer was lost may have been stored all
        the same: then the job did complete, and failing it now would run it again."""
        self.completing = True
        try:
            save_status(self.s3, bucket, self.status_key, self.status)
        except Exception as exc:
            try:
                stored = load_status(self.s3, bucket, self.status_key)
            except Exception:
                stored = None
            if (
                stored is not None
                and stored.completed
                and stored.job_fingerprint == self.status.job_fingerprint
                and stored.attempt == self.status.attempt
            ):
                log.warning(
                    "upload %s: the completion record was stored although the call failed "
                    "(%s); the job is complete",
                    self.job.upload_id,
                    exc,
                )
                return
            raise

    def _finish(
        self, *, ok: str | None, error: str | None = None, message: str | None = None
    ) -> AssemblyStatus:
        results = {
            name: tuple(
                ResultRecord(
                    o.name,
                    o.bucket,
                    o.key,
                    o.size,
                    o.content_type,
                    o.etag,
                    f"s3://{o.bucket}/{o.key}",
                )
                for o in outputs
            )
            for name, outputs in self.runtime.results.items()
        }
        return attrs.evolve(
            self.status,
            ok=ok,
            error=error,
            message=message,
            step=self.step,
            results=results,
            bytes_output=sum(r.size for rs in results.values() for r in rs),
            execution_duration=round(time.monotonic() - self.started, 3),
            last_updated=now_text(),
        )

    def _fail(self, exc: Exception) -> NoReturn:
        if isinstance(exc, JobCancelledError):
            # Another delivery may be running this job now: leave its record and its
            # progress alone, and let the message's visibility decide.
            log.warning("%s", exc)
            raise exc
        code = error_code(exc, self.step)
        text = str(exc) or type(exc).__name__
        job, attempt = self.job, self.status.attempt
        limit = self.processor.max_receive_count
        final = limit is not None and attempt >= limit
        # One line per attempt; the traceback once: on the last attempt, or at DEBUG.
        unexpected = not isinstance(exc, TransflowError)
        log.log(
            logging.ERROR if final else logging.WARNING,
            "upload %s (template %s, attempt %d%s) failed%s: %s: %s%s",
            job.upload_id,
            job.template_id,
            attempt,
            f" of {limit}" if limit is not None else "",
            f" in step {self.step!r}" if self.step else "",
            code,
            text,
            "" if final or limit is None else "; retried through the queue",
            exc_info=unexpected and (final or log.isEnabledFor(logging.DEBUG)),
        )
        self.status = self._finish(ok=None, error=code, message=text[:2000])
        bucket = self.bucket or self.processor.output_bucket
        if self.completing:
            # Whether the completion marker was stored is unknown: writing an error record
            # over it could make a finished job run again. The next delivery reads it.
            log.error(
                "upload %s: completion not confirmed; left for the next delivery", job.upload_id
            )
        elif bucket is not None:
            try:
                save_status(self.s3, bucket, self.status_key, self.status)
            except Exception:
                log.exception("upload %s: the error status record was not written", job.upload_id)
        self.stream.emit(
            ProgressType.ERROR,
            step=self.step,
            message=text[:1000],
            template_id=job.template_id,
            extra={"error": code, "attempt": attempt, "retrying": not final},
        )
        self.stream.flush()
        if limit is None or final:
            self.processor.deliver_webhook(self.template, self.status)
        raise JobFailedError(
            job.upload_id, text, template_id=job.template_id, step=self.step, code=code
        ) from exc


def _never() -> bool:
    return False


def _job_metrics(job: ProcessingJob, *, ok: bool, started: float) -> None:
    """JobsCompleted or JobsFailed, and JobDuration, per template (CloudWatch EMF)."""
    emit(
        {
            "JobsCompleted" if ok else "JobsFailed": (1, "Count"),
            "JobDuration": (round((time.monotonic() - started) * 1000, 1), "Milliseconds"),
        },
        {"Template": job.template_id},
        properties={"branch": job.branch, "uploadId": job.upload_id},
    )


def _download(s3: S3Client, job: ProcessingJob, directory: Path) -> tuple[InputFile, ...]:
    """Stream every input into ``directory`` under a unique local name."""
    directory.mkdir(parents=True)
    taken: set[str] = set()
    inputs: list[InputFile] = []
    for ref in job.objects:
        path = directory / local_input_name(ref.key, taken)
        try:
            response = s3.get_object(Bucket=ref.bucket, Key=ref.key)
            with response["Body"] as body, path.open("wb") as out:
                shutil.copyfileobj(body, out, 1024 * 1024)  # streamed: bounded memory
        except Exception as exc:
            raise _InputError(
                f"input s3://{ref.bucket}/{ref.key} cannot be downloaded ({exc}); check "
                "that it exists and that the processor may read it"
            ) from exc
        inputs.append(
            InputFile(
                path=path,
                name=ref.key.rsplit("/", 1)[-1],
                bucket=ref.bucket,
                key=ref.key,
                size=path.stat().st_size,
                etag=str(response.get("ETag", "")).strip('"'),
                content_type=response.get("ContentType"),
                metadata=dict(response.get("Metadata", {})),
            )
        )
    return tuple(inputs)
