"""The job processor: runs jobs from the processing queue through their templates.

:meth:`JobProcessor.handle` is a Lambda handler for the SQS event source with
ReportBatchItemFailures (the batch loop is :mod:`transflow._aws.lambda_batch`);
:meth:`JobProcessor.process` runs one received message and is what the long-running worker
(:mod:`transflow._aws.poller`) calls; :meth:`JobProcessor.run_job` runs a parsed job.

A job: mark its status record executing with a write conditional on there being none (only
when one exists, on a redelivery, is it read: a finished job is not run again), run the steps
in order with a :class:`StepContext` (each input downloaded when a step first takes it;
skipping those a previous delivery of the same job checkpointed, retrying a step in place
when it declares a :class:`~.retries.StepRetry`, checkpointing each in the record), write the
status record, publish ``done`` (or ``error``), POST the webhook. A failure raises
:class:`JobFailedError`, so the message returns through its visibility timeout and the
queue's redrive policy dead-letters it after ``maxReceiveCount`` deliveries.

This module performs effects in order; the attempt's states and decisions are
:mod:`transflow.processing.attempt`, the bytes go through :class:`~.storage.JobStorage`.

Longer than 500 lines on purpose: what is left after those splits is one job's effects in
the order they happen (claim check, record, inputs, steps, outputs, events, webhook), and
what each effect does on failure reads best next to the effect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import botocore.exceptions

from transflow._aws.claimcheck import (
    MAX_CLAIM_CHECK_BYTES,
    ClaimCheck,
    decode_job_message,
)
from transflow._aws.emf import emit
from transflow._aws.errors import client_error_code, client_error_message
from transflow._aws.lambda_batch import (
    LambdaContext,
    PartialBatchResponse,
    process_partial_response,
)
from transflow._aws.logs import log_context
from transflow._aws.retry import RetryPolicy
from transflow._aws.tracing import span
from transflow._wire import validators
from transflow._wire.dunders import fields_repr
from transflow._wire.keys import (
    DEFAULT_CLAIM_PREFIX,
    claim_key_problems,
    job_key_problems,
    job_object_problems,
)
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProcessingJob, ProgressType
from transflow._wire.trace import TraceContext, from_aws_trace_header, parse_trace
from transflow.errors import (
    BatchFailedError,
    ConfigError,
    EmptyTemplateError,
    JobCancelledError,
    JobConfinementError,
    JobFailedError,
    JobFormatError,
    LeaseLostError,
    UploadCanceledError,
)
from transflow.processing import attempt as attempts
from transflow.processing.attempt import Attempt, Conflict, FailureDecision, Verdict
from transflow.processing.context import JobInputs, OutputFile, OutputLocation, StepContext
from transflow.processing.destination import ProgressDestination
from transflow.processing.progress import ProgressPublisher, ProgressStream
from transflow.processing.status import (
    AssemblyStatus,
    now_text,
    status_record_dict,
    webhook_delivery_id,
)
from transflow.processing.storage import (
    JobStorage,
    S3JobStorage,
    StatusConflict,
)
from transflow.processing.templates import Step, Template, TemplateRegistry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from transflow.processing.webhooks import WebhookSender

__all__ = [
    "BatchResponse",
    "JobProcessor",
]

log = logging.getLogger(__name__)

_SENDER_LOCK = threading.Lock()

BatchResponse = PartialBatchResponse
"""What Lambda's ReportBatchItemFailures expects (:mod:`transflow._aws.lambda_batch`)."""


@attrs.define(eq=False, repr=False)  # per job, never shown: no generated repr
class _JobRun:
    """The runtime of one job for its step contexts (see :class:`~.context.JobRuntime`)."""

    storage: JobStorage
    stream: ProgressStream
    deadline: Callable[[], float] | None
    outputs: dict[str, list[OutputFile]] = attrs.field(factory=dict)

    def emit(self, type: ProgressType, fields: Mapping[str, Any]) -> None:
        self.stream.emit(type, **fields)

    def store_output(self, local_path: Path, bucket: str, key: str, content_type: str) -> str:
        return self.storage.store_output(local_path, bucket, key, content_type)

    def record_output(self, output: OutputFile) -> None:
        self.outputs.setdefault(output.step, []).append(output)

    def remaining_time(self) -> float:
        return self.deadline() if self.deadline is not None else math.inf

    def recorded_outputs(self) -> Mapping[str, Sequence[OutputFile]]:
        return self.outputs

    def fetch_output(self, output: OutputFile, local_path: Path) -> None:
        self.storage.fetch_output(output.bucket, output.key, local_path)


def _never() -> bool:
    return False


def _always() -> bool:
    return True


def _bucket_set(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    names = list(value) if isinstance(value, (list, tuple, set, frozenset)) else None
    if names is None or not all(isinstance(b, str) and b for b in names):
        raise ConfigError(
            f"claim_buckets must be a list or set of bucket names, not {value!r}"[:200]
        )
    return frozenset(str(b) for b in names)


def _is_webhook_sender(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # The webhook module is loaded by the first template with a webhook, not by every cold
    # start: a sender passed in means it is loaded already.
    from transflow.processing.webhooks import WebhookSender  # noqa: PLC0415

    validators.instance_of(WebhookSender)(instance, attribute, value)


def _attempt_token(message: ReceivedMessage) -> str:
    if "ApproximateReceiveCount" in message.attributes:
        return str(message.receive_count)
    # No count (ReceiveMessage without system attributes): the receipt handle is unique per
    # delivery and stable while one delivery retries its sends, which is what dedup needs.
    return "r" + hashlib.sha256(message.receipt_handle.encode()).hexdigest()[:16]


@attrs.define(eq=False)
class JobProcessor:
    """Runs processing jobs through the templates of ``registry``, with progress events to
    ``progress`` (a :class:`~transflow.processing.destination.ProgressQueue`, or in fan-out
    mode a :class:`~transflow.processing.destination.ProgressTopic` with ``sns_client``;
    :meth:`ProgressDestination.from_config
    <transflow.processing.destination.ProgressDestination.from_config>` makes it).

    ``output_bucket`` is used for templates that do not name their own. ``time_margin`` is
    the Lambda time (seconds) below which no new job starts. ``max_receive_count`` (the
    queue's redrive setting), when given, lets the processor tell the last attempt from a
    retry: the error webhook is sent only once, on the last attempt. ``raise_on_total_failure``
    makes :meth:`handle` raise :class:`BatchFailedError` when every record failed.
    ``webhooks`` posts to the templates' webhooks (default: a
    :class:`~.webhooks.WebhookSender` made when a template with a webhook first needs one).
    ``storage`` reads and writes the job's bytes (default: :class:`~.storage.S3JobStorage`
    over ``s3_client``). ``cancel_check_after``: before each step, the status record is
    read (one GET) to see whether the upload was cancelled, unless the record was read or
    written (conditionally, so it was not cancelled then) less than this many seconds ago.
    ``flush_after``: the progress latency budget, seconds an emitted event may wait to go
    with others (see :meth:`ProgressPublisher.combined
    <.progress.ProgressPublisher.combined>`). ``pack_events`` (default ``True``): one
    message per upload per send rather than one per event (:attr:`ProgressPublisher.pack_events
    <.progress.ProgressPublisher.pack_events>`).

    Confinement: ``upload_bucket`` (required, the bridge's) is the only bucket a job's
    inputs are read from, and only from the job's own folder
    ``uploads/{branch}/[users/{id}/]{uploadId}/``. ``claim_buckets`` are the buckets a
    claim check may point at (default: the upload bucket and the output buckets; pass the
    bridge's ``claim_bucket`` if it names another), under ``claim_prefix`` (the bridge's),
    at most ``max_claim_bytes`` long, and the job it holds must be the one the message
    names (upload id, branch, user). Anything else is refused before any effect with
    :class:`JobConfinementError`, as is a job whose branch, upload id or user id would
    place keys outside ``outputs/{branch}/[users/{id}/]{uploadId}/``. Every option is
    checked here: a wrong one raises :class:`ConfigError`.
    """

    __repr__ = fields_repr

    registry: TemplateRegistry = attrs.field(validator=validators.instance_of(TemplateRegistry))
    s3_client: S3Client = attrs.field(kw_only=True)
    sqs_client: SQSClient = attrs.field(kw_only=True)
    progress: ProgressDestination = attrs.field(
        kw_only=True, validator=validators.instance_of(ProgressDestination)
    )
    output_bucket: str | None = attrs.field(
        default=None, kw_only=True, validator=validators.optional(validators.non_empty_text)
    )
    time_margin: float = attrs.field(default=30.0, kw_only=True, validator=validators.seconds())
    max_receive_count: int | None = attrs.field(
        default=None, kw_only=True, validator=validators.optional(validators.bounded_int(1, 1_000))
    )
    raise_on_total_failure: bool = attrs.field(default=False, kw_only=True)
    flush_after: float = attrs.field(default=0.5, kw_only=True, validator=validators.seconds())
    pack_events: bool = attrs.field(default=True, kw_only=True)
    work_dir: str | None = attrs.field(
        default=None, kw_only=True, validator=validators.optional(validators.non_empty_text)
    )
    retry_policy: RetryPolicy = attrs.field(
        factory=RetryPolicy, kw_only=True, validator=validators.instance_of(RetryPolicy)
    )
    webhooks: WebhookSender | None = attrs.field(
        default=None, kw_only=True, validator=validators.optional(_is_webhook_sender)
    )
    storage: JobStorage = attrs.field(
        default=attrs.Factory(lambda self: S3JobStorage(self.s3_client), takes_self=True),
        kw_only=True,
    )
    # Fan-out mode (a ProgressTopic): the client that publishes to it.
    sns_client: SNSClient | None = attrs.field(default=None, kw_only=True)
    upload_bucket: str = attrs.field(kw_only=True, validator=validators.non_empty_text)
    claim_buckets: frozenset[str] | None = attrs.field(
        default=None, kw_only=True, converter=_bucket_set
    )
    claim_prefix: str = attrs.field(
        default=DEFAULT_CLAIM_PREFIX, kw_only=True, validator=validators.non_empty_text
    )
    max_claim_bytes: int = attrs.field(
        default=MAX_CLAIM_CHECK_BYTES,
        kw_only=True,
        validator=validators.bounded_int(1_024, 256 * 1024 * 1024),
    )
    cancel_check_after: float = attrs.field(
        default=1.0, kw_only=True, validator=validators.seconds()
    )
    publisher: ProgressPublisher = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.publisher = ProgressPublisher(
            self.progress,
            sqs=self.sqs_client,
            sns=self.sns_client,
            flush_after=self.flush_after,
            policy=self.retry_policy,
            pack_events=self.pack_events,
        )
        homeless = [t.template_id for t in self.registry if not self._bucket_of(t)]
        if homeless:
            raise ConfigError(
                f"templates {homeless} have no output_bucket and the processor has none: pass "
                "output_bucket= to JobProcessor or to registry.template(...)"
            )
        for template in self.registry:  # a refused destination fails here, not after a job
            if template.webhook_url:
                self._webhook_sender().check_url(template.webhook_url)

    def _webhook_sender(self) -> WebhookSender:
        """``webhooks``, or the default :class:`WebhookSender` when none was given, made
        when a template with a webhook first needs it (registering it or delivering to it)."""
        with _SENDER_LOCK:  # one sender, so its delivery counts are all in one place
            if self.webhooks is None:
                from transflow.processing.webhooks import WebhookSender  # noqa: PLC0415

                self.webhooks = WebhookSender()
            return self.webhooks

    def _bucket_of(self, template: Template) -> str | None:
        return template.output_bucket or self.output_bucket

    def known_claim_buckets(self) -> frozenset[str]:
        """The buckets a claim check may point at."""
        if self.claim_buckets is not None:
            return self.claim_buckets
        found = {self._bucket_of(t) for t in self.registry} | {self.output_bucket}
        return frozenset(b for b in found if b) | {self.upload_bucket}

    def _refused(self, what: str, problems: list[str]) -> JobConfinementError:
        """The error for a job refused before any effect, logged once and counted (the
        ``JobsRefused`` metric): the message fails, without a status record, an event or a
        webhook (a forged job must not write into the upload it names), and the redrive
        policy dead-letters it."""
        refused = JobConfinementError(problems)
        log.error("%s refused: %s", what, refused)
        emit({"JobsRefused": (1, "Count")}, {}, properties={"refused": what[:200]})
        return refused

    # -- Lambda -----------------------------------------------------------------------------

    def handle(
        self, event: Mapping[str, Any], context: LambdaContext | None = None
    ) -> BatchResponse:
        """Lambda handler for an SQS event (enable ReportBatchItemFailures on the mapping).

        Returns the failed records; a record that is not run because its group failed or
        time ran short is reported failed too, so SQS delivers it again.

        The progress events of all the batch's jobs are sent together
        (:meth:`ProgressPublisher.combined <.progress.ProgressPublisher.combined>`), all of
        them before this returns, so before Lambda deletes any of the batch's messages."""
        with self.publisher.combined():
            outcome = process_partial_response(
                event,
                lambda message, remaining: self.process(message, remaining_time=remaining),
                context=context,
                time_margin=self.time_margin,
            )
        if self.raise_on_total_failure and outcome.all_failed:
            raise BatchFailedError(outcome.failed)
        return outcome.response()

    # -- one message ----------------------------------------------------------------------

    def process(
        self,
        message: ReceivedMessage,
        *,
        remaining_time: Callable[[], float] | None = None,
        cancelled: Callable[[], bool] | None = None,
        lease_held: Callable[[], bool] | None = None,
    ) -> None:
        """Run the job of one received message. Returns on success (delete the message);
        raises a :class:`TransflowError` on failure (let the message become visible again).

        ``cancelled`` is asked before each step and before the job is marked completed: a
        worker that gave up on this delivery (its heartbeat stopped, so another worker may
        hold the message now) must not complete the job a second time. ``lease_held`` is
        asked at the same points: false when the worker cannot confirm it still holds the
        message (:class:`LeaseLostError`). Whatever they say, the completion record is
        written conditionally, so only one delivery ever completes a job."""
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
            decoded = self._claimed_job(message, decoded)
        self.run_job(
            decoded,
            attempt=message.receive_count,
            attempt_token=_attempt_token(message),
            message_id=message.message_id,
            remaining_time=remaining_time,
            cancelled=cancelled,
            lease_held=lease_held,
            aws_trace_header=message.attributes.get("AWSTraceHeader"),
        )

    def _claimed_job(self, message: ReceivedMessage, claim: ClaimCheck) -> ProcessingJob:
        """The job of a claim check: only one the bridge wrote for the message's upload is
        read (bucket, prefix, key layout), and only the job the message names is run."""
        what = f"message {message.message_id} (claim check of upload {claim.upload_id[:80]!r})"
        known = self.known_claim_buckets()
        problems = []
        if claim.bucket not in known:
            problems.append(
                f"claimCheck.bucket: {claim.bucket[:80]!r} is not one of the processor's "
                f"claim buckets {sorted(known)}; pass the bridge's claim bucket as "
                "JobProcessor(claim_buckets=...)"
            )
        problems += claim_key_problems(claim.key, self.claim_prefix, claim.upload_id, claim.branch)
        if problems:
            raise self._refused(what, problems)
        try:
            job = self._resolve_claim(message, claim)
        except JobConfinementError as exc:
            raise self._refused(what, list(exc.problems)) from None
        # A message of an older bridge names no branch: the key's (checked above) stands in.
        key_branch = claim.key[len(self.claim_prefix) :].split("/", 1)[0]
        problems = attrs.evolve(claim, branch=claim.branch or key_branch).identity_problems(job)
        if problems:
            raise self._refused(what, problems)
        return job

    def _resolve_claim(self, message: ReceivedMessage, claim: ClaimCheck) -> ProcessingJob:
        try:
            return self.storage.read_claimed_job(claim, max_bytes=self.max_claim_bytes)
        except JobConfinementError:
            raise
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
        message_id: str | None = None,
        remaining_time: Callable[[], float] | None = None,
        cancelled: Callable[[], bool] | None = None,
        lease_held: Callable[[], bool] | None = None,
        aws_trace_header: str | None = None,
    ) -> AssemblyStatus:
        """Run ``job`` (delivery ``attempt``, 1 for the first). Returns its status record
        (another delivery's, when that one completed this very job first: then this one
        sends no ``done`` event and no webhook, unless it was a delivery of the same
        message, which may have died before them: then it sends that delivery's again);
        raises :class:`JobFailedError` when it fails (a cancelled upload returns its
        ``ASSEMBLY_CANCELED`` record, so its message is deleted), :class:`JobCancelledError`
        when ``cancelled()`` turned true (or :class:`LeaseLostError` when ``lease_held()``
        turned false) before it completed, and :class:`JobConfinementError`, before any
        effect, for a job whose keys would leave its output folder or whose objects are not
        in its own upload folder of the upload bucket.

        The job's span continues the trace the job carries (``traceparent``) and links to
        the message's ``AWSTraceHeader`` (``aws_trace_header``) when SQS set one; its log
        lines carry the upload id, attempt, step and trace id (:mod:`transflow._aws.logs`).

        ``message_id`` (the SQS message's, which :meth:`process` passes) is kept in the
        status record: a redelivery of that message that finds the job completed sends its
        ``done`` event again under the same identity and posts its webhook again (the first
        delivery may have died before either went); without it, a job found completed is
        answered with a new ``done`` and no webhook."""
        problems = job_key_problems(job)
        if not problems:
            problems = job_object_problems(job, frozenset({self.upload_bucket}))
        if problems:
            raise self._refused(f"upload {job.upload_id[:80]!r}", problems)
        carried = _carried_trace(job)
        links = [t for t in (carried, from_aws_trace_header(aws_trace_header)) if t is not None]
        with span(
            "transflow.job",
            parent=carried,
            kind="CONSUMER",
            links=links,
            attributes={
                "transflow.upload_id": job.upload_id,
                "transflow.template_id": job.template_id,
                "transflow.attempt": attempt,
                "messaging.system": "aws_sqs",
            },
        ) as job_span:
            # A job from a sender that carried no trace still gets one, so its log lines
            # and events can be found together.
            trace = job_span.context or TraceContext.new()
            return self._run_traced(
                job,
                trace,
                attempt=attempt,
                attempt_token=attempt_token,
                message_id=message_id,
                remaining_time=remaining_time,
                cancelled=cancelled,
                lease_held=lease_held,
            )

    def _run_traced(
        self,
        job: ProcessingJob,
        trace: TraceContext,
        *,
        attempt: int,
        attempt_token: str | None,
        message_id: str | None,
        remaining_time: Callable[[], float] | None,
        cancelled: Callable[[], bool] | None,
        lease_held: Callable[[], bool] | None,
    ) -> AssemblyStatus:
        with log_context(
            upload_id=job.upload_id,
            template_id=job.template_id,
            attempt=attempt,
            trace_id=trace.trace_id,
        ):
            stream = self.publisher.stream(
                job.upload_id, job.branch, attempt=attempt, attempt_token=attempt_token
            )
            stream.trace = trace
            with stream:
                run = _AttemptRunner(
                    self,
                    stream,
                    _JobRun(self.storage, stream, remaining_time),
                    attempts.begin(job, attempt, now=now_text(), message_id=message_id),
                    cancelled=cancelled or _never,
                    lease_held=lease_held or _always,
                    trace=trace,
                )
                try:
                    status = run.run()
                except JobFailedError:
                    _job_metrics(job, ok=False, started=run.started)
                    raise
                _job_metrics(job, ok=True, started=run.started, canceled=status.canceled)
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
        """POST the status record ``status`` to the template's webhook, if it has one; never
        raises."""
        if template is None or not template.webhook_url:
            return
        body = json.dumps(status_record_dict(status), separators=(",", ":"), ensure_ascii=False)
        try:
            self._webhook_sender().deliver(
                template.webhook_url,
                body.encode("utf-8"),
                template.webhook_secret,
                delivery_id=webhook_delivery_id(status),
            )
        except Exception:  # a webhook never fails the job
            log.exception("webhook of upload %s raised", status.upload_id)


@attrs.define(eq=False, repr=False)  # per job, never shown: no generated repr
class _AttemptRunner:
    """Performs one delivery attempt: the effects, in order, of the states and decisions of
    :mod:`transflow.processing.attempt`. ``state`` is replaced, never changed in place."""

    processor: JobProcessor
    stream: ProgressStream
    runtime: _JobRun
    state: Attempt
    template: Template | None = None
    started: float = attrs.field(factory=time.monotonic)
    cancelled: Callable[[], bool] = attrs.field(default=_never, kw_only=True)
    lease_held: Callable[[], bool] = attrs.field(default=_always, kw_only=True)
    etag: str | None = None
    """The status record's ETag as this attempt last read or wrote it: every write of the
    record is conditional on it."""
    duplicate: AssemblyStatus | None = None
    previous: AssemblyStatus | None = None
    """The record a previous delivery left (its checkpoints let this one resume)."""
    confirmed_at: float = -math.inf
    """When the record was last read or written by this attempt and not cancelled."""
    trace: TraceContext | None = attrs.field(default=None, kw_only=True)
    """The job span's trace context: what its events carry outside a step."""
    inputs: JobInputs | None = None
    """The job's inputs once the steps may take them."""

    @property
    def storage(self) -> JobStorage:
        return self.processor.storage

    @property
    def job(self) -> ProcessingJob:
        return self.state.job

    def run(self) -> AssemblyStatus:
        try:
            self.template = self.processor.registry.get(self.job.template_id)
            self.state = self.state.located(self.processor.resolve_bucket(self.template))
            self._check_cancelled()
            claimed = self._claim_record(self.template)
            if isinstance(claimed, AssemblyStatus):
                return claimed
            self._execute(self.template, claimed)
        except UploadCanceledError as exc:
            return self._stop_canceled(exc)
        except Exception as exc:
            try:
                self._fail(exc)
            except UploadCanceledError as canceled:  # it failed after being cancelled
                return self._stop_canceled(canceled)
        if self.duplicate is not None:
            again = attempts.replayed_done(self.duplicate, self.state.record.message_id)
            log.warning(
                "upload %s: another delivery completed this job first (attempt %d); this one "
                "(attempt %d) %s",
                self.job.upload_id,
                self.duplicate.attempt,
                self.state.attempt,
                "sends its done event and webhook again (a delivery of the same message, "
                "which may have died before them)"
                if again
                else "sends no done event and no webhook",
            )
            if again is not None:
                self._send_again(self.duplicate, again)
            return self.duplicate
        self.stream.emit(
            ProgressType.DONE,
            seq=self.state.record.done_seq,  # reserved: the completion record names it
            template_id=self.job.template_id,
            extra={"results": attempts.result_count(self.state.record)},
        )
        self.stream.flush()  # the browser hears of it before the webhook is posted
        self.processor.deliver_webhook(self.template, self.state.record)
        return self.state.record

    def _claim_record(self, template: Template) -> AssemblyStatus | tuple[str, ...]:
        """Mark the job executing: the stored record when this very job completed before
        (then it is not run), else the checkpointed steps this attempt reuses.

        The first write is conditional on there being no record (``IfNoneMatch``), so a
        first delivery, by far the common case, writes once and reads nothing. Only when a
        record exists (a redelivery, a re-upload, a cancel) is it read: its verdict and
        checkpoints decide, and the executing record replaces it conditionally on the ETag
        read."""
        bucket = self.state.bucket
        assert bucket is not None
        try:
            self.etag = self.storage.put_status_record(
                bucket, self.state.record_key, self.state.record, if_match=None
            )
        except StatusConflict:
            pass
        else:
            self.confirmed_at = time.monotonic()
            return ()
        replayed = self._replayed(bucket)
        if replayed is not None:
            return replayed
        reused = self._reusable(template, bucket)
        if reused:
            self.state = self.state.checkpointed(reused, self.runtime.outputs)
        try:
            self.etag = self.storage.put_status_record(
                bucket, self.state.record_key, self.state.record, if_match=self.etag
            )
        except StatusConflict:
            # Another delivery wrote the record since it was read: it holds the job, unless
            # the record was cancelled in between.
            self._raise_conflict(bucket)
        self.confirmed_at = time.monotonic()
        return reused

    def _replayed(self, bucket: str) -> AssemblyStatus | None:
        """The stored record when this very job completed before (then it is not run)."""
        stored = self.storage.read_status(bucket, self.state.record_key)
        previous, self.etag = stored.record, stored.etag
        self.previous = previous
        if previous is not None and previous.canceled:
            raise UploadCanceledError(self.job.upload_id, None)
        self.confirmed_at = time.monotonic()
        verdict = self.state.verdict(previous)
        if verdict is Verdict.RERUN_CHANGED:
            log.info(
                "upload %s completed before with another job; running this one",
                self.job.upload_id,
            )
        if verdict is not Verdict.REPLAY:
            return None
        assert previous is not None
        again = attempts.replayed_done(previous, self.state.record.message_id)
        log.info(
            "upload %s already completed (attempt %d); not running it again%s",
            self.job.upload_id,
            previous.attempt,
            "; its done event and webhook go again" if again else "",
        )
        if again is None:
            self.stream.emit(
                ProgressType.DONE,
                template_id=self.job.template_id,
                extra={"replayed": True, "results": attempts.result_count(previous)},
            )
        else:
            self._send_again(previous, again)
        return previous

    def _send_again(self, completed: AssemblyStatus, done: attempts.DoneIdentity) -> None:
        """The ``done`` and webhook of ``completed``, written by a delivery of this same
        message, which may have died before either went. The done goes as that delivery
        numbered it, so the queue or the hub drops it if it went; the webhook goes with the
        same delivery id, for the receiver to deduplicate."""
        with self.processor.publisher.stream(
            self.job.upload_id,
            self.job.branch,
            attempt_token=done.token,
            next_seq=done.seq,
        ) as original:
            original.trace = self.stream.trace
            original.emit(
                ProgressType.DONE,
                template_id=self.job.template_id,
                extra={"replayed": True, "results": attempts.result_count(completed)},
            )
        self.processor.deliver_webhook(self.template, completed)

    def _execute(self, template: Template, reused: tuple[str, ...]) -> None:
        bucket = self.state.bucket
        assert bucket is not None
        if not template.steps:  # after the record is held, so the error record is written
            raise EmptyTemplateError(template.template_id)
        extra: dict[str, Any] = {"attempt": self.state.attempt, "objects": len(self.job.objects)}
        if reused:
            extra["resumed"] = len(reused)
        self.stream.emit(
            ProgressType.START,
            template_id=self.job.template_id,
            key=self.job.objects[0].key,
            extra=extra,
        )
        with tempfile.TemporaryDirectory(prefix="transflow-", dir=self.processor.work_dir) as tmp:
            work_dir = Path(tmp)
            inputs = self.inputs = self.storage.open_inputs(self.job, work_dir / "inputs")
            location = OutputLocation(bucket, self.state.output_prefix)
            unbroken = True  # every step so far checkpointed: a checkpoint can be resumed
            for index, step in enumerate(template.steps):
                self._check_cancelled()
                self.state = self.state.entering(step.name)
                if step.name in reused:
                    self._replay_step(step.name)
                    continue
                context = StepContext(
                    self.job,
                    template.template_id,
                    step.name,
                    inputs,
                    work_dir,
                    location,
                    self.state.attempt,
                    self.runtime,
                )
                self._traced_step(step, context)
                unbroken = unbroken and step.checkpoint
                # The last step's checkpoint is the completion record, written next.
                if unbroken and index < len(template.steps) - 1:
                    self._checkpoint(bucket, step.name)
            self.state = self.state.steps_done().with_inputs(inputs.opened(), inputs.unopened())
        self._check_cancelled()
        done = attempts.DoneIdentity(self.stream.reserve_seq(), self.stream.attempt_token)
        self.state = attempts.complete(
            self.state, self.runtime.outputs, duration=self._elapsed(), now=now_text(), done=done
        )
        self._save_completed(bucket)

    def _reusable(self, template: Template, bucket: str) -> tuple[str, ...]:
        """The first steps a previous delivery of this job finished whose outputs are still
        as it recorded them (one HeadObject each); their outputs join this attempt's."""
        steps = attempts.resumable_steps(
            self.previous, self.state.record.job_fingerprint, template.steps
        )
        if not steps:
            return ()
        assert self.previous is not None
        reused: list[str] = []
        for name in steps:
            outputs = attempts.recorded_outputs(self.previous, name)
            changed = [
                o.key
                for o in outputs
                if not self.storage.output_unchanged(o.bucket, o.key, o.etag, o.size)
            ]
            if changed:
                log.warning(
                    "upload %s: output %s of checkpointed step %r is missing or changed; "
                    "running from that step",
                    self.job.upload_id,
                    changed[0],
                    name,
                )
                break
            reused.append(name)
            if outputs:
                self.runtime.outputs[name] = list(outputs)
        if reused:
            log.info(
                "upload %s: resuming attempt %d after checkpointed steps %s",
                self.job.upload_id,
                self.state.attempt,
                reused,
            )
        return tuple(reused)

    def _replay_step(self, name: str) -> None:
        """The events of a step a previous delivery finished, so a browser's bar is right."""
        self.stream.emit(ProgressType.STEP_START, step=name, extra={"checkpoint": True})
        for output in self.runtime.outputs.get(name, ()):
            self.stream.emit(
                ProgressType.OUTPUT,
                step=name,
                name=output.name,
                bucket=output.bucket,
                key=output.key,
                extra={"checkpoint": True},
            )
        self.stream.emit(ProgressType.STEP_DONE, step=name, extra={"checkpoint": True})

    def _traced_step(self, step: Step, context: StepContext) -> None:
        """Run a step, from its ``step:start`` to its ``step:done``, in its span and log
        context: its events carry the step's trace context; its duration and retries are
        metrics per template and step."""
        retries = [0]
        started = time.monotonic()
        try:
            with (
                span(
                    "transflow.step",
                    parent=self.trace,
                    attributes={
                        "transflow.upload_id": self.job.upload_id,
                        "transflow.template_id": self.job.template_id,
                        "transflow.step": step.name,
                    },
                ) as step_span,
                log_context(
                    step=step.name,
                    span_id=step_span.context.span_id if step_span.context else None,
                ),
            ):
                self.stream.trace = step_span.context
                self.stream.emit(ProgressType.STEP_START, step=step.name)
                try:
                    self._run_step(step, context, retries)
                    self.stream.emit(ProgressType.STEP_DONE, step=step.name)
                finally:
                    step_span.set("transflow.retries", retries[0])
        finally:
            self.stream.trace = self.trace
            _step_metrics(self.job, step.name, started=started, retries=retries[0])

    def _run_step(self, step: Step, context: StepContext, retries: list[int]) -> None:
        def once() -> None:
            # A retried step writes its outputs again: only the last try's are recorded.
            self.runtime.outputs.pop(step.name, None)
            step.func(context)

        def announce(next_try: int, wait: float, exc: BaseException) -> None:
            assert step.retry is not None
            retries[0] += 1
            self.stream.emit(
                ProgressType.PROGRESS,
                step=step.name,
                message=f"retrying after {type(exc).__name__}: {exc}"[:500],
                extra={
                    "retrying": True,
                    "try": next_try,
                    "attempts": step.retry.attempts,
                    "delay": round(wait, 3),
                    "error": type(exc).__name__,
                },
            )
            self.stream.flush()  # the browser hears of it before the wait, not after
            self._check_cancelled()

        if step.retry is None:  # runs once; the retry module is loaded by a step that retries
            once()
            return
        from transflow.processing.retries import run_step  # noqa: PLC0415

        run_step(
            once,
            step.retry,
            step=step.name,
            remaining=self.runtime.remaining_time,
            on_retry=announce,
        )

    def _checkpoint(self, bucket: str, name: str) -> None:
        """Record ``name`` finished, with its outputs: one conditional PUT of the record."""
        self.state = self.state.checkpointed(
            (*self.state.record.checkpoints, name), self.runtime.outputs
        )
        try:
            self.etag = self.storage.put_status_record(
                bucket, self.state.record_key, self.state.record, if_match=self.etag
            )
        except StatusConflict:
            self._raise_conflict(bucket)
        self.confirmed_at = time.monotonic()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelledError(self.job.upload_id, self.state.step)
        if not self.lease_held():
            raise LeaseLostError(self.job.upload_id, self.state.step)
        self._check_record()

    def _check_record(self) -> None:
        """Raise :class:`UploadCanceledError` when the upload was cancelled: one GET of the
        status record, unless this attempt read or wrote it less than
        ``cancel_check_after`` seconds ago (progress events never read it)."""
        bucket = self.state.bucket
        if bucket is None or self.etag is None:
            return  # before the record is first written: _replayed has just read it
        if time.monotonic() - self.confirmed_at < self.processor.cancel_check_after:
            return
        stored = self.storage.read_status(bucket, self.state.record_key)
        # Changed otherwise: another delivery holds the job, and this attempt's next
        # conditional write will say so.
        if stored.etag != self.etag and stored.record is not None and stored.record.canceled:
            raise UploadCanceledError(self.job.upload_id, self.state.step)
        self.confirmed_at = time.monotonic()

    def _raise_conflict(self, bucket: str) -> NoReturn:
        """After a refused conditional write: follow a cancellation, else the delivery
        that wrote the record holds the job."""
        stored = self.storage.read_status_record(bucket, self.state.record_key)
        if stored is not None and stored.canceled:
            raise UploadCanceledError(self.job.upload_id, self.state.step)
        raise LeaseLostError(self.job.upload_id, self.state.step)

    def _stop_canceled(self, exc: UploadCanceledError) -> AssemblyStatus:
        """Stop a cancelled upload: the record keeps ``ASSEMBLY_CANCELED`` and lists the
        outputs written so far (deleted when the canceller asked), a final ``cancelled``
        event, the webhook; the message is then deleted (nothing to retry)."""
        job = self.job
        bucket = self.state.bucket
        assert bucket is not None
        key = self.state.record_key
        written = dict(self.runtime.outputs)
        stored = self.storage.read_status(bucket, key)
        record = stored.record
        if record is None or not record.canceled:  # only a cancelled record got us here
            raise LeaseLostError(job.upload_id, exc.step) from exc
        if written:
            listed = attrs.evolve(self.state, record=record).finish(
                written,
                ok=record.ok,
                message=record.message,
                duration=self._elapsed(),
                now=now_text(),
            )
            listed = attrs.evolve(listed, step=exc.step, delete_outputs=record.delete_outputs)
            if record.delete_outputs:
                # Only a cancelled upload loads the cancelling module.
                from transflow.processing.cancellation import delete_results  # noqa: PLC0415

                delete_results(self.processor.s3_client, listed.results)
            try:
                self.storage.put_status_record(bucket, key, listed, if_match=stored.etag)
                record = listed
            except StatusConflict:
                log.warning(
                    "upload %s: the cancelled record changed again; its outputs are not "
                    "listed in it",
                    job.upload_id,
                )
        log.warning(
            "upload %s (template %s, attempt %d) cancelled%s; %d output(s) written%s; its "
            "message is deleted",
            job.upload_id,
            job.template_id,
            self.state.attempt,
            f" before step {exc.step!r}" if exc.step else "",
            sum(len(v) for v in written.values()),
            " and deleted" if record.delete_outputs and written else "",
        )
        self.stream.emit(
            ProgressType.CANCELLED,
            step=exc.step,
            template_id=job.template_id,
            extra={"results": attempts.result_count(record)},
        )
        self.stream.flush()
        self.processor.deliver_webhook(self.template, record)
        return record

    def _save_completed(self, bucket: str) -> None:
        """Write the completion marker, only if the record is still the one this attempt
        wrote (S3 conditional write), so only one delivery ever completes a job. A PUT
        whose answer was lost may have been stored all the same: then the job did
        complete, and failing it now would run it again."""
        key, record = self.state.record_key, self.state.record
        try:
            self.etag = self.storage.put_status_record(bucket, key, record, if_match=self.etag)
        except StatusConflict:
            stored = self.storage.read_status_record(bucket, key)
            if stored is not None and stored.canceled:
                raise UploadCanceledError(self.job.upload_id, None) from None
            conflict = attempts.completion_conflict(stored, record)
            if conflict is Conflict.SUPERSEDED:
                raise LeaseLostError(self.job.upload_id, None) from None
            if conflict is Conflict.DUPLICATE:
                assert stored is not None
                self.duplicate = stored
        except Exception as exc:
            try:
                stored = self.storage.read_status_record(bucket, key)
            except Exception:
                stored = None
            if not attempts.completion_stored(stored, record):
                raise
            log.warning(
                "upload %s: the completion record was stored although the call failed "
                "(%s); the job is complete",
                self.job.upload_id,
                exc,
            )

    def _fail(self, exc: Exception) -> NoReturn:
        decision = attempts.decide_failure(
            exc, self.state, max_receive_count=self.processor.max_receive_count
        )
        if decision is None:
            log.warning("%s", exc)
            raise exc
        self._report(decision, exc)
        job = self.job
        raise JobFailedError(
            job.upload_id,
            decision.text,
            template_id=job.template_id,
            step=decision.step,
            code=decision.code,
        ) from exc

    def _report(self, decision: FailureDecision, exc: Exception) -> None:
        """The effects of a failure: log, status record, ``error`` event, webhook."""
        job = self.job
        limit = self.processor.max_receive_count
        # One line per attempt; the traceback once: on the last attempt, or at DEBUG.
        log.log(
            logging.ERROR if decision.final else logging.WARNING,
            "upload %s (template %s, attempt %d%s) failed%s: %s: %s%s",
            job.upload_id,
            job.template_id,
            decision.attempt,
            f" of {limit}" if limit is not None else "",
            f" in step {decision.step!r}" if decision.step else "",
            decision.code,
            decision.text,
            "" if decision.final or limit is None else "; retried through the queue",
            exc_info=exc
            if decision.unexpected and (decision.final or log.isEnabledFor(logging.DEBUG))
            else None,
        )
        if self.inputs is not None:
            self.state = self.state.with_inputs(self.inputs.opened(), self.inputs.unopened())
        self.state = self.state.failed_with(
            self.state.finish(
                self.runtime.outputs,
                ok=None,
                error=decision.code,
                message=decision.record_message,
                duration=self._elapsed(),
                now=now_text(),
            )
        )
        bucket = self.state.bucket or self.processor.output_bucket
        if not decision.write_record:
            log.error(
                "upload %s: completion not confirmed; left for the next delivery", job.upload_id
            )
        elif bucket is not None:
            try:
                self.etag = self.storage.put_status_record(
                    bucket, self.state.record_key, self.state.record, if_match=self.etag
                )
            except StatusConflict:
                stored = self.storage.read_status_record(bucket, self.state.record_key)
                if stored is not None and stored.canceled:
                    # Cancelled meanwhile: it ends cancelled, not failed and not retried.
                    raise UploadCanceledError(job.upload_id, decision.step) from None
                log.warning(
                    "upload %s: the record changed since this attempt read it (another "
                    "delivery holds the job); its error record is not written",
                    job.upload_id,
                )
            except botocore.exceptions.ClientError as write_error:
                # One line: the AWS error says all (a traceback here repeats the failure's).
                log.error(  # noqa: TRY400
                    "upload %s: the error status record was not written to bucket %r: %s: %s",
                    job.upload_id,
                    bucket,
                    client_error_code(write_error) or "?",
                    client_error_message(write_error),
                )
            except Exception:
                log.exception("upload %s: the error status record was not written", job.upload_id)
        self.stream.emit(
            ProgressType.ERROR,
            step=decision.step,
            message=decision.event_message,
            template_id=job.template_id,
            extra={
                "error": decision.code,
                "attempt": decision.attempt,
                "retrying": decision.retrying,
            },
        )
        self.stream.flush()
        if decision.send_webhook:
            self.processor.deliver_webhook(self.template, self.state.record)


def _step_metrics(job: ProcessingJob, step: str, *, started: float, retries: int) -> None:
    """StepDuration and StepRetries per template and step (CloudWatch EMF): both
    dimensions come from the registered templates, so their count stays bounded."""
    emit(
        {
            "StepDuration": (round((time.monotonic() - started) * 1000, 1), "Milliseconds"),
            "StepRetries": (retries, "Count"),
        },
        {"Template": job.template_id, "Step": step},
        properties={"branch": job.branch, "uploadId": job.upload_id},
    )


def _carried_trace(job: ProcessingJob) -> TraceContext | None:
    """The trace the job carries; a malformed one is ignored (the job still runs), once
    logged: the job span then starts a new trace."""
    carried = parse_trace(job.traceparent, job.tracestate)
    if carried is None and job.traceparent is not None:
        log.warning(
            "upload %s: ignoring the job's malformed traceparent %r",
            job.upload_id,
            job.traceparent[:80],
        )
    return carried


def _job_metrics(job: ProcessingJob, *, ok: bool, started: float, canceled: bool = False) -> None:
    """JobsCompleted, JobsFailed or JobsCancelled (never a failure), and JobDuration, per
    template (CloudWatch EMF)."""
    name = "JobsCancelled" if canceled else "JobsCompleted" if ok else "JobsFailed"
    emit(
        {
            name: (1, "Count"),
            "JobDuration": (round((time.monotonic() - started) * 1000, 1), "Milliseconds"),
        },
        {"Template": job.template_id},
        properties={"branch": job.branch, "uploadId": job.upload_id},
    )
