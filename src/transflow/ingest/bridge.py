"""The grouping bridge: S3 "object created" notifications → processing jobs on the FIFO queue.

S3 cannot notify a FIFO queue, so notifications reach the bridge directly (Lambda), through
a standard queue, or through EventBridge; the bridge reads each object's upload metadata
(HeadObject, concurrently, with a bound; once per upload while the bridge stays warm,
:mod:`transflow.ingest.known_uploads`), groups the objects into jobs
(:mod:`transflow.ingest.grouping`), and sends them with SendMessageBatch
(:func:`transflow._aws.sqs_batch.send_batch`): MessageGroupId = uploadId, a deterministic
MessageDeduplicationId, every entry checked. A job too large for one message travels as a
claim check (:mod:`transflow._aws.claimcheck`).

What the notification says is untrusted (anyone who may send to its queue can forge one):
the bridge takes only the bucket and key from it, both checked, and learns whether the
object exists and which content it holds (the ETag the job and its deduplication id name)
from S3: the HeadObject, or the upload's one listing per invocation. A one-file upload whose
HeadObject answered needs no listing.

Every record ends in exactly one place of the :class:`BridgeResult`: a sent job, a skip, a
failure, or (for a whole upload whose other files are still arriving) the waiting list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import botocore.exceptions

from transflow._aws.emf import emit
from transflow._aws.lambda_batch import (
    PartialBatchResponse,
    partial_batch_response,
)
from transflow._aws.retry import RetryPolicy, is_retryable_error
from transflow._aws.s3 import error_code, is_not_found
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._aws.tracing import Span, start_span
from transflow._wire import validators
from transflow._wire.cancelmark import is_canceled_record
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.keys import DEFAULT_CLAIM_PREFIX, folder_status_key
from transflow._wire.limits import MAX_MESSAGE_BYTES, MESSAGE_BYTES_RANGE
from transflow._wire.messages import ReceivedMessage
from transflow._wire.naming import sanitize_branch
from transflow._wire.trace import TraceContext, from_aws_trace_header, parse_trace
from transflow.errors import BridgeError, UploadMetadataError
from transflow.ingest.grouping import (
    HeadedRecord,
    ListedObject,
    PlannedJob,
    UploadCheck,
    complete_upload,
    key_branch_problem,
    plan_jobs,
    unlisted_records,
)
from transflow.ingest.known_uploads import KnownUploads, upload_folder
from transflow.ingest.metadata import read_upload_metadata
from transflow.ingest.s3events import (
    EventSource,
    FailedRecord,
    ParsedEvent,
    S3Record,
    SkippedRecord,
    parse_event,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow._aws.claimcheck import ClaimCheck

__all__ = [
    "BridgeResponse",
    "BridgeResult",
    "GroupingBridge",
    "SentJob",
    "WaitingRecord",
]

log = logging.getLogger(__name__)

_DENIED = frozenset({"403", "AccessDenied", "Forbidden"})

T = TypeVar("T")


class BridgeResponse(PartialBatchResponse):
    """What ``lambda_handler`` returns: ``{"batchItemFailures": [...]}``, Lambda's partial
    batch response (its keys are defined once, in :mod:`transflow._aws.lambda_batch`)."""


@attrs.frozen
class SentJob:
    """A job the queue accepted (or dropped as a duplicate of one it holds)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    upload_id: str
    dedup_id: str
    """The job's MessageDeduplicationId (see :func:`~transflow.ingest.grouping.job_dedup_id`)."""
    object_count: int
    records: tuple[str, ...]
    claim_check: ClaimCheck | None = None


@attrs.frozen
class WaitingRecord:
    """A file of a whole upload whose other files have not all arrived yet: the last file's
    notification emits the upload's one job."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    ref: str
    upload_id: str
    arrived: int
    expected: int
    message_id: str | None = None


@attrs.frozen
class BridgeResult:
    """What the bridge did with every record of an event."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    source: EventSource
    sent: tuple[SentJob, ...] = ()
    skipped: tuple[SkippedRecord, ...] = ()
    failed: tuple[FailedRecord, ...] = ()
    waiting: tuple[WaitingRecord, ...] = ()
    message_ids: tuple[str, ...] = ()

    @property
    def jobs_sent(self) -> int:
        """How many jobs went to the processing queue."""
        return len(self.sent)

    @property
    def ok(self) -> bool:
        """Whether no record failed."""
        return not self.failed

    def failed_message_ids(self) -> list[str]:
        """The SQS messages that carried a failed record, in event order, each once."""
        bad = {f.message_id for f in self.failed if f.message_id}
        return [m for m in self.message_ids if m in bad]

    def batch_response(self) -> BridgeResponse:
        """The Lambda partial batch response for an SQS-delivered event."""
        return BridgeResponse(**partial_batch_response(self.failed_message_ids()))


def _message_ids(event: object) -> tuple[str, ...]:
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return ()
    return tuple(
        str(r["messageId"])
        for r in event["Records"]
        if isinstance(r, dict) and isinstance(r.get("messageId"), str) and r["messageId"]
    )


@attrs.define(eq=False)
class GroupingBridge:
    """Turns S3 notifications into processing jobs on the FIFO processing queue.

    ``upload_bucket`` (required) is the bucket uploads arrive in: a notification for any
    other bucket is a failed record, never a job.
    ``claim_bucket`` holds jobs too large for one message (default: the bucket of the
    upload); ``whole_uploads`` emits one job per upload once all its files have arrived,
    when their metadata carries the file count. ``known_uploads`` bounds how many such
    uploads' metadata the bridge remembers between invocations (one HeadObject per upload
    per warm bridge instead of one per file; 0 turns it off). Clients are used from worker threads
    (boto3 clients are thread-safe; give the S3 client ``max_pool_connections`` at least
    ``head_concurrency``).
    ``status_bucket`` (the processor's output bucket), when given, makes the bridge read
    each upload's status record before queueing its job (one GET per job) and not queue an
    upload that was cancelled (``transflow cancel``): its records are skipped, logged and
    counted (the ``UploadsCancelledNotQueued`` metric).
    """

    __repr__ = fields_repr

    sqs_client: SQSClient
    s3_client: S3Client
    queue_url: str = attrs.field(kw_only=True, validator=validators.non_empty_text)
    upload_bucket: str = attrs.field(kw_only=True, validator=validators.non_empty_text)
    claim_bucket: str | None = attrs.field(
        default=None, kw_only=True, validator=validators.optional(validators.non_empty_text)
    )
    claim_prefix: str = attrs.field(
        default=DEFAULT_CLAIM_PREFIX, kw_only=True, validator=validators.non_empty_text
    )
    max_message_bytes: int = attrs.field(
        default=MAX_MESSAGE_BYTES,
        kw_only=True,
        validator=validators.bounded_int(1, MESSAGE_BYTES_RANGE[1]),
    )
    head_concurrency: int = attrs.field(
        default=16, kw_only=True, validator=validators.bounded_int(1, 256)
    )
    default_branch: str = attrs.field(default="main", kw_only=True, converter=sanitize_branch)
    whole_uploads: bool = attrs.field(default=True, kw_only=True)
    retry: RetryPolicy = attrs.field(
        factory=RetryPolicy, kw_only=True, validator=validators.instance_of(RetryPolicy)
    )
    status_bucket: str | None = attrs.field(
        default=None, kw_only=True, validator=validators.optional(validators.non_empty_text)
    )
    known_uploads: int = attrs.field(
        default=4096, kw_only=True, validator=validators.bounded_int(0, 1_000_000)
    )
    _known: KnownUploads = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        self._known = KnownUploads(self.known_uploads)

    # -- entry points ------------------------------------------------------------------

    def lambda_handler(self, event: Mapping[str, Any], context: object = None) -> BridgeResponse:
        """The Lambda entry point.

        For an SQS event, returns ``batchItemFailures`` naming every message with a record
        that was not enqueued (enable ``ReportBatchItemFailures`` on the event source
        mapping); when every message failed, or a failed record names no message, raises
        :class:`BridgeError` instead, so the batch is retried even without it. A record
        that is not an S3 notification (Kinesis, DynamoDB, an SNS message from elsewhere)
        is such a failure, never an empty list. For a direct S3, SNS or EventBridge
        invocation, raises :class:`BridgeError` when any record failed, so Lambda retries
        the event (jobs already sent are dropped as duplicates by the queue) and, in the
        end, hands it to the function's on-failure destination.
        """
        result = self.handle(event)
        if not result.failed:
            return BridgeResponse(**partial_batch_response(()))
        summary = "; ".join(f"{f.ref}: {f.reason}" for f in result.failed[:5])
        message = (
            f"{len(result.failed)} S3 record(s) were not enqueued ({summary}); "
            "Lambda will retry them"
        )
        if result.source is EventSource.SQS:
            response = result.batch_response()
            # A failure no message id names (a record without one) cannot be reported per
            # item: an empty list would delete it with the batch, so the batch fails whole.
            named = all(f.message_id in result.message_ids for f in result.failed)
            if named and len(response["batchItemFailures"]) < len(result.message_ids):
                return response
        raise BridgeError(message, result)

    def handle(self, event: Mapping[str, Any]) -> BridgeResult:
        """Turn one event (any of the three shapes) into queued jobs."""
        parsed = parse_event(event)
        records, skipped, refused = self._own_objects_skipped(parsed)
        failed: list[FailedRecord] = [*parsed.failed, *refused]
        known = {r.ref: self._known_record(r) for r in records}
        outcomes = iter(self._map(self._head, [r for r in records if known[r.ref] is None]))
        headed: list[HeadedRecord] = []
        for record in records:  # event order: the first record's metadata names the job's
            outcome = known[record.ref] or next(outcomes)
            if isinstance(outcome, HeadedRecord):
                headed.append(outcome)
                self._remember(outcome)
            else:
                failed.append(outcome)
        plan = plan_jobs(
            headed, default_branch=self.default_branch, whole_uploads=self.whole_uploads
        )
        failed.extend(plan.failed)
        jobs = list(plan.jobs)
        waiting: list[WaitingRecord] = []
        for check, checked in zip(plan.checks, self._map(self._check, plan.checks), strict=True):
            failed.extend(checked.failed)
            if checked.job is not None:
                jobs.append(checked.job)
                self._known.forget(check.bucket, check.prefix)
            elif (remaining := checked.check) is not None:
                waiting.extend(
                    WaitingRecord(
                        h.record.ref,
                        remaining.upload_id,
                        checked.arrived,
                        remaining.expected,
                        h.record.message_id,
                    )
                    for h in remaining.records
                )
        jobs = self._without_canceled(jobs, skipped)
        sent, send_failures = self._send(jobs, _aws_trace_headers(event))
        failed.extend(send_failures)
        result = BridgeResult(
            source=parsed.source,
            sent=tuple(sent),
            skipped=tuple(skipped),
            failed=tuple(failed),
            waiting=tuple(waiting),
            message_ids=_message_ids(event),
        )
        log.info(
            "bridge: %d job(s) sent, %d record(s) waiting for the rest of their upload, "
            "%d skipped, %d failed",
            result.jobs_sent,
            len(result.waiting),
            len(result.skipped),
            len(result.failed),
        )
        for failure in result.failed:
            log.error("not enqueued: %s (%s): %s", failure.ref, failure.key, failure.reason)
        return result

    # -- steps -------------------------------------------------------------------------

    def _own_objects_skipped(
        self, parsed: ParsedEvent
    ) -> tuple[list[S3Record], list[SkippedRecord], list[FailedRecord]]:
        """Claim checks the bridge wrote itself are not uploads: skip them. Records of
        another bucket, or whose key names a branch that is not canonical, fail alone."""
        records: list[S3Record] = []
        skipped = list(parsed.skipped)
        failed: list[FailedRecord] = []
        for record in parsed.records:
            refused = self._refusal(record)
            if refused is not None:
                failed.append(
                    FailedRecord(
                        record.ref, refused, record.message_id, record.bucket, record.key, False
                    )
                )
            elif record.key.startswith(self.claim_prefix):
                reason = "a claim check written by the bridge, not an upload"
                log.info("skipped %s: %s", record.ref, reason)
                skipped.append(SkippedRecord(record.ref, reason, record.message_id))
            else:
                records.append(record)
        return records, skipped, failed

    def _refusal(self, record: S3Record) -> str | None:
        if record.bucket != self.upload_bucket:
            return (
                f"the record is for bucket {record.bucket[:80]!r}, not the upload bucket "
                f"{self.upload_bucket!r}; the bridge makes jobs of its own bucket's uploads "
                "only (check the notification's wiring)"
            )
        return key_branch_problem(record.key)

    def _map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> Iterator[T]:
        if len(items) <= 1:
            return iter([fn(item) for item in items])
        workers = min(self.head_concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transflow-bridge") as pool:
            return iter(list(pool.map(fn, items)))

    def _head(self, record: S3Record) -> HeadedRecord | FailedRecord:
        def fail(reason: str, *, retryable: bool) -> FailedRecord:
            return FailedRecord(
                record.ref, reason, record.message_id, record.bucket, record.key, retryable
            )

        try:
            response = self.retry.retrying()(
                self.s3_client.head_object, Bucket=record.bucket, Key=record.key
            )
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if is_not_found(exc):
                return fail(
                    "the object is gone (404): it was deleted or overwritten before the "
                    "bridge read it; nothing to process",
                    retryable=False,
                )
            if code in _DENIED:
                return fail(
                    "HeadObject was denied (403): give the bridge's role s3:GetObject on "
                    "the upload bucket",
                    retryable=False,
                )
            return fail(f"HeadObject failed: {code} {exc}", retryable=is_retryable_error(exc))
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            return fail(f"HeadObject failed: {exc}", retryable=True)
        try:
            metadata = read_upload_metadata(record.key, response.get("Metadata", {}))
        except UploadMetadataError as exc:
            return fail("; ".join(exc.problems), retryable=False)
        etag = response.get("ETag")
        return HeadedRecord(record, metadata, etag.strip('"') if etag else None)

    def _known_record(self, record: S3Record) -> HeadedRecord | None:
        """The record with its upload's metadata, when a file of its folder was headed
        before (no request), else None (it needs its HeadObject)."""
        if not self.whole_uploads:
            return None
        folder = upload_folder(record.key)
        metadata = None if folder is None else self._known.get(record.bucket, folder)
        return None if metadata is None else HeadedRecord(record, metadata, headed=False)

    def _remember(self, headed: HeadedRecord) -> None:
        """Keep the metadata of a whole upload's folder for its later files."""
        meta, key = headed.metadata, headed.record.key
        if not (headed.headed and self.whole_uploads and meta.file_count and meta.upload_id):
            return
        folder = upload_folder(key)
        # Only a folder named after the upload id: the one prefix its check lists.
        if folder is not None and folder.rstrip("/").rpartition("/")[2] == meta.upload_id:
            self._known.remember(headed.record.bucket, folder, meta)

    def _check(self, check: UploadCheck) -> _Checked:
        """List the upload's prefix: its job when complete, else how many files arrived.
        The records no request has shown to exist must be in the listing."""
        if _single_headed_file(check):
            # A one-file upload whose one object HeadObject just read: the listing could
            # tell nothing more (its POST policy allowed this one key).
            first = check.records[0]
            listed = [ListedObject(first.record.key, first.etag or "")]
        else:
            try:
                listed = list(self._list(check.bucket, check.prefix))
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                reason = f"listing {check.prefix} failed: {error_code(exc)} {exc}"
                return _Checked(
                    failed=[
                        FailedRecord(
                            h.record.ref,
                            reason,
                            h.record.message_id,
                            h.record.bucket,
                            h.record.key,
                            is_retryable_error(exc),
                        )
                        for h in check.records
                    ]
                )
        remaining, gone = unlisted_records(check, listed)
        for failure in gone:
            log.warning("not in its upload's listing: %s (%s)", failure.ref, failure.key)
        if remaining is None:
            return _Checked(failed=gone)
        outcome = complete_upload(remaining, listed, default_branch=self.default_branch)
        if outcome is None:
            log.info(
                "upload %s: %d of %d files arrived; the last one emits the job",
                remaining.upload_id,
                len(listed),
                remaining.expected,
            )
            return _Checked(check=remaining, arrived=len(listed), failed=gone)
        if isinstance(outcome, PlannedJob):
            return _Checked(job=outcome, failed=gone)
        return _Checked(failed=[*gone, *outcome])

    def _without_canceled(
        self, jobs: list[PlannedJob], skipped: list[SkippedRecord]
    ) -> list[PlannedJob]:
        """The jobs whose upload was not cancelled; the records of the others join
        ``skipped`` (a cancelled upload is done with: nothing to retry)."""
        if self.status_bucket is None or not jobs:
            return jobs
        kept: list[PlannedJob] = []
        for planned, canceled in zip(jobs, self._map(self._is_canceled, jobs), strict=True):
            if not canceled:
                kept.append(planned)
                continue
            job = planned.job
            reason = f"upload {job.upload_id} was cancelled; its job is not queued"
            log.warning("not queued: %s (%d record(s))", reason, len(planned.records))
            emit(
                {"UploadsCancelledNotQueued": (1, "Count")},
                {},
                properties={"branch": job.branch, "uploadId": job.upload_id},
            )
            skipped.extend(SkippedRecord(r.ref, reason, r.message_id) for r in planned.records)
        return kept

    def _is_canceled(self, planned: PlannedJob) -> bool:
        job = planned.job
        folder = job.user.user_id if job.user is not None else None
        key = folder_status_key(job.branch, job.upload_id, folder)
        assert self.status_bucket is not None
        try:
            response = self.retry.retrying()(
                self.s3_client.get_object, Bucket=self.status_bucket, Key=key
            )
            body = response["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if not is_not_found(exc):
                # Unknown is not cancelled: queueing is safe, the processor checks again.
                log.warning("status record s3://%s/%s not read: %s", self.status_bucket, key, exc)
            return False
        return is_canceled_record(body)

    def _list(self, bucket: str, prefix: str) -> Iterator[ListedObject]:
        """Every object under ``prefix``, a page (up to 1,000) at a time."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.retry.retrying()(self.s3_client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                yield ListedObject(obj["Key"], str(obj.get("ETag", "")).strip('"'))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _claim_key(self, planned: PlannedJob) -> str:
        job = planned.job
        return f"{self.claim_prefix}{job.branch}/{job.upload_id}/{planned.job_dedup_id}.json"

    def _message(self, planned: PlannedJob) -> tuple[OutgoingMessage, ClaimCheck | None]:
        body = planned.job.to_json()
        claim: ClaimCheck | None = None
        if len(body.encode("utf-8", "surrogatepass")) > self.max_message_bytes:
            # Only a job too large for a message needs claim checks: off the cold start.
            from transflow._aws.claimcheck import store_claimed_job  # noqa: PLC0415

            bucket = self.claim_bucket or planned.job.objects[0].bucket
            claim = self.retry.retrying()(
                store_claimed_job,
                self.s3_client,
                planned.job,
                bucket=bucket,
                key=self._claim_key(planned),
            )
            body = claim.to_json()
        message = OutgoingMessage(
            body, group_id=planned.job.upload_id, dedup_id=planned.job_dedup_id
        )
        return message, claim

    def _send(
        self, jobs: Sequence[PlannedJob], aws_traces: Mapping[str, TraceContext] | None = None
    ) -> tuple[list[SentJob], list[FailedRecord]]:
        # One message per deduplication id: the same job planned twice goes once.
        by_id: dict[str, PlannedJob] = {}
        for planned in jobs:
            first = by_id.get(planned.job_dedup_id)
            by_id[planned.job_dedup_id] = (
                planned
                if first is None
                else attrs.evolve(first, records=first.records + planned.records)
            )
        failed: list[FailedRecord] = []
        outgoing: list[tuple[str, OutgoingMessage]] = []
        claims: dict[str, ClaimCheck | None] = {}
        spans: dict[str, Span] = {}
        for key, untraced in list(by_id.items()):
            spans[key], planned = _traced(untraced, aws_traces or {})
            by_id[key] = planned
            try:
                message, claims[key] = self._message(planned)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                failed.extend(
                    _record_failures(
                        planned,
                        f"storing the claim check failed: {error_code(exc)} {exc}",
                        retryable=is_retryable_error(exc),
                    )
                )
                continue
            outgoing.append((key, message))
        result = send_batch(
            self.sqs_client,
            self.queue_url,
            outgoing,
            max_bytes=self.max_message_bytes,
            policy=self.retry,
        )
        sent = [
            SentJob(
                upload_id=by_id[key].job.upload_id,
                dedup_id=key,
                object_count=len(by_id[key].job.objects),
                records=tuple(r.ref for r in by_id[key].records),
                claim_check=claims.get(key),
            )
            for key in result.succeeded
        ]
        enqueued = set(result.succeeded)
        for key, started in spans.items():
            started.end(None if key in enqueued else "the job was not enqueued")
        for failure in result.failed:
            failed.extend(
                _record_failures(
                    by_id[failure.key],
                    f"SendMessageBatch failed: {failure.code} {failure.message}",
                    retryable=not failure.sender_fault,
                )
            )
        return sent, failed


@attrs.frozen
class _Checked:
    """What listing one upload gave: its job, or the check still waiting (with how many
    files arrived), and the records that failed."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    job: PlannedJob | None = None
    check: UploadCheck | None = None
    arrived: int = 0
    failed: list[FailedRecord] = attrs.field(factory=list)


def _single_headed_file(check: UploadCheck) -> bool:
    keys = {h.record.key for h in check.records}
    return (
        check.expected == 1
        and len(keys) == 1
        and all(h.headed and h.etag for h in check.records)
        and len({h.etag for h in check.records}) == 1
    )


def _aws_trace_headers(event: object) -> dict[str, TraceContext]:
    """The ``AWSTraceHeader`` SQS set on each message of an SQS-delivered event, by id."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return {}
    found: dict[str, TraceContext] = {}
    for record in event["Records"]:
        message = ReceivedMessage.from_lambda_record(record)
        trace = from_aws_trace_header(message.attributes.get("AWSTraceHeader"))
        if trace is not None and message.message_id:
            found[message.message_id] = trace
    return found


def _traced(planned: PlannedJob, aws_traces: Mapping[str, TraceContext]) -> tuple[Span, PlannedJob]:
    """The bridge's span of a job, and the job carrying it on: under the upload's trace
    (from its metadata), or a new trace for an upload made without ``create_upload``;
    linked to the X-Ray traces of the notifications' messages."""
    job = planned.job
    parent = parse_trace(job.traceparent, job.tracestate)
    links = {t for r in planned.records if (t := aws_traces.get(r.message_id or ""))}
    started = start_span(
        "transflow.bridge",
        parent=parent,
        kind="PRODUCER",
        links=sorted(links, key=lambda t: t.traceparent),
        attributes={
            "transflow.upload_id": job.upload_id,
            "transflow.template_id": job.template_id,
            "transflow.objects": len(job.objects),
            "messaging.system": "aws_sqs",
        },
    )
    carried = started.context or TraceContext.new()
    job = attrs.evolve(job, traceparent=carried.traceparent, tracestate=carried.tracestate)
    return started, attrs.evolve(planned, job=job)


def _record_failures(planned: PlannedJob, reason: str, *, retryable: bool) -> list[FailedRecord]:
    return [
        FailedRecord(r.ref, reason, r.message_id, r.bucket, r.key, retryable)
        for r in planned.records
    ]
