"""The dead-letter queue: look at failed jobs, send them back, or throw them away.

:func:`peek` shows failed jobs without consuming them: it receives with a short visibility
and releases every message it saw at once. :func:`redrive` moves failed jobs back to the
processing queue: with SQS's StartMessageMoveTask where the endpoint has it, otherwise by
receiving, sending with the original MessageGroupId and a deterministic deduplication id,
and deleting only what was sent (at-least-once; never a delete before a successful send).
:func:`purge` empties the queue, and only with the queue's name as confirmation.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import attrs
import botocore.exceptions

from transflow._aws.claimcheck import ClaimCheck, decode_job_message, load_claimed_job
from transflow._aws.errors import response_error_codes
from transflow._aws.retry import RetryPolicy
from transflow._aws.s3 import error_code, is_not_found
from transflow._aws.sqs_batch import (
    EntryFailure,
    OutgoingMessage,
    change_visibility_batch,
    delete_batch,
    send_batch,
)
from transflow._wire.jsontext import JsonTextError, parse_json
from transflow._wire.keys import folder_status_key
from transflow._wire.limits import MAX_MESSAGE_BYTES
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProcessingJob, ProgressEvent, ProgressType
from transflow.errors import ConfirmationRequiredError, JobFormatError, TransflowError
from transflow.processing.destination import ProgressDestination
from transflow.processing.progress import ProgressPublisher, first_seq

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "AnnounceReport",
    "FailedJob",
    "RedriveProgress",
    "RedriveReport",
    "announce",
    "announcement",
    "peek",
    "plan_resend",
    "purge",
    "redrive",
    "redrive_dedup_id",
]

log = logging.getLogger(__name__)

PEEK_VISIBILITY_SEC = 30
"""How long peeked messages are hidden if releasing them fails (normally they are released
at once)."""

REDRIVE_VISIBILITY_SEC = 120
"""How long a message being redriven is hidden: the time to send and delete one batch."""

# Error codes with which an endpoint says it does not have an operation.
_UNSUPPORTED = frozenset(
    {
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "InvalidAction",
        "NotImplemented",
        "NotImplementedError",
        "UnknownOperationException",
        "500",
        "501",
    }
)


@attrs.frozen
class FailedJob:
    """A message in the dead-letter queue, decoded as far as it can be.

    ``receive_count`` is SQS's ApproximateReceiveCount (it counts earlier peeks too; from
    :func:`peek`, it is the count from before that peek). ``reason`` is
    the ``error``/``message`` of the upload's status record when one was found;
    ``body_error`` says why the body is not a job, when it is not."""

    message_id: str
    group_id: str | None
    receive_count: int
    sent_at: datetime | None
    body: str
    upload_id: str | None = None
    template_id: str | None = None
    branch: str | None = None
    user_id: str | None = None
    reason: str | None = None
    body_error: str | None = None


@attrs.frozen
class RedriveProgress:
    """How far a redrive is, given to the ``on_progress`` callback after every batch."""

    moved: int
    failed: int
    limit: int | None


@attrs.frozen
class RedriveReport:
    """What :func:`redrive` did.

    ``mode`` is ``"move-task"`` (SQS moves the messages in the background; ``task_handle``
    identifies the task and ``moved`` is the DLQ depth when it started), ``"resend"`` (moved
    by this process) or ``"dry-run"`` (nothing moved; ``moved`` counts what would be).
    ``failed`` lists the messages left in the DLQ, by message id, with why; ``no_move_task``
    says the re-send was the fallback because the endpoint has no move task."""

    mode: Literal["move-task", "resend", "dry-run"]
    moved: int = 0
    failed: tuple[EntryFailure, ...] = ()
    task_handle: str | None = None
    jobs: tuple[FailedJob, ...] = ()
    no_move_task: bool = False
    """The endpoint has no StartMessageMoveTask (moto, LocalStack): re-sent instead."""

    @property
    def ok(self) -> bool:
        """Whether nothing was left behind for a reason."""
        return not self.failed


# -- decisions ----------------------------------------------------------------------------


def redrive_dedup_id(message: ReceivedMessage) -> str:
    """A deduplication id for re-sending a DLQ message: the same for the same stay in the
    DLQ (so a redrive interrupted between send and delete does not queue the job twice),
    different from the id the job was first sent with (which the processing queue may
    still remember, and would silently drop)."""
    stay = message.attributes.get("SentTimestamp", "")
    digest = hashlib.sha256(f"redrive\0{message.message_id}\0{stay}".encode()).hexdigest()
    return f"redrive-{digest[:64]}"


def plan_resend(
    messages: Sequence[ReceivedMessage],
) -> tuple[list[tuple[str, OutgoingMessage]], list[EntryFailure]]:
    """What to send for a received batch, keyed by message id, and what cannot be sent.

    A message without a MessageGroupId takes the upload id of its job as its group; one
    with neither stays in the DLQ."""
    outgoing: list[tuple[str, OutgoingMessage]] = []
    refused: list[EntryFailure] = []
    for message in messages:
        group = message.group_id or _upload_id(message.body)
        if not group:
            refused.append(
                EntryFailure(
                    message.message_id,
                    "NoMessageGroup",
                    "the message has no MessageGroupId and its body no uploadId; move it by hand",
                    True,
                )
            )
            continue
        outgoing.append(
            (
                message.message_id,
                OutgoingMessage(message.body, group_id=group, dedup_id=redrive_dedup_id(message)),
            )
        )
    return outgoing, refused


def _upload_id(body: str) -> str | None:
    try:
        data = parse_json(body)
    except JsonTextError:
        return None
    upload = data.get("uploadId") if isinstance(data, dict) else None
    return upload if isinstance(upload, str) and upload else None


def _sent_at(message: ReceivedMessage) -> datetime | None:
    try:
        millis = int(message.attributes["SentTimestamp"])
    except (KeyError, ValueError):
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def describe_failed(message: ReceivedMessage, job: ProcessingJob | ClaimCheck | None) -> FailedJob:
    """A :class:`FailedJob` from a message and what its body decoded to."""
    base = FailedJob(
        message_id=message.message_id,
        group_id=message.group_id,
        receive_count=message.receive_count,
        sent_at=_sent_at(message),
        body=message.body,
    )
    if isinstance(job, ProcessingJob):
        return attrs.evolve(
            base,
            upload_id=job.upload_id,
            template_id=job.template_id,
            branch=job.branch,
            user_id=job.user.user_id if job.user else None,
        )
    if isinstance(job, ClaimCheck):
        return attrs.evolve(base, upload_id=job.upload_id)
    return base


def reason_from_status(record: Any) -> str | None:
    """The failure reason of a status record: ``"{error}: {message}"`` from its top-level
    keys, either alone, or None."""
    if not isinstance(record, Mapping):
        return None
    parts = [str(record[k]) for k in ("error", "message") if record.get(k)]
    return ": ".join(parts) or None


# -- I/O ----------------------------------------------------------------------------------


def _receive(
    sqs: SQSClient, url: str, count: int, visibility: int, wait: int
) -> list[ReceivedMessage]:
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(10, count)),
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return [_received(m) for m in response.get("Messages", [])]


def _received(message: Mapping[str, Any]) -> ReceivedMessage:
    received = ReceivedMessage.from_sqs_message(message)
    attributes = message.get("MessageAttributes") or {}
    if attributes:
        # Message attributes ride along as "attr:{name}" so plan_resend can refuse what it
        # cannot carry; transflow's own messages have none.
        extra = {
            f"attr:{name}": str(value.get("DataType", "")) for name, value in attributes.items()
        }
        received = attrs.evolve(received, attributes={**received.attributes, **extra})
    return received


def _visible(sqs: SQSClient, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def _next_batch(
    sqs: SQSClient, url: str, count: int, visibility: int, wait_sec: int
) -> list[ReceivedMessage]:
    """A batch, short-polled first; an empty answer while the queue says it has visible
    messages gets one long poll, so a run ends promptly on an empty queue."""
    batch = _receive(sqs, url, count, visibility, 0)
    if batch or wait_sec <= 0 or _visible(sqs, url) == 0:
        return batch
    return _receive(sqs, url, count, visibility, wait_sec)


def _release(sqs: SQSClient, url: str, messages: Iterable[ReceivedMessage]) -> None:
    items = [(m.message_id, (m.receipt_handle, 0)) for m in messages]
    if not items:
        return
    result = change_visibility_batch(sqs, url, items)
    if not result.ok:
        log.warning(
            "%d messages stay hidden until their visibility timeout ends: %s",
            len(result.failed),
            "; ".join(f"{f.key}: {f.code}" for f in result.failed[:5]),
        )


def _status_reason(s3: S3Client, bucket: str, job: FailedJob) -> str | None:
    if job.upload_id is None or job.branch is None:
        return None
    # A job carries the user's folder name (already cleaned): cleaning it again would look
    # in another folder and find no record, so no reason.
    key = folder_status_key(job.branch, job.upload_id, job.user_id)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        return f"(status record s3://{bucket}/{key} unreadable: {error_code(exc)})"
    except botocore.exceptions.BotoCoreError as exc:  # e.g. a bucket name S3 cannot have
        return f"(status record s3://{bucket}/{key} unreadable: {exc})"
    try:
        return reason_from_status(parse_json(body))
    except JsonTextError:
        return f"(status record s3://{bucket}/{key} is not JSON)"


def _decode(
    message: ReceivedMessage, s3: S3Client | None
) -> tuple[ProcessingJob | ClaimCheck | None, str | None]:
    try:
        job = decode_job_message(message.body)
    except JobFormatError as exc:
        return None, str(exc)
    if isinstance(job, ClaimCheck) and s3 is not None:
        try:
            return load_claimed_job(s3, job), None
        except (
            botocore.exceptions.ClientError,
            botocore.exceptions.BotoCoreError,  # a bucket or key botocore refuses to send
            JobFormatError,
        ) as exc:
            return job, f"claim check s3://{job.bucket}/{job.key} unreadable: {exc}"
    return job, None


def peek(
    sqs: SQSClient,
    dlq_url: str,
    n: int = 10,
    *,
    s3: S3Client | None = None,
    output_bucket: str | None = None,
    wait_sec: int = 1,
) -> tuple[FailedJob, ...]:
    """Up to ``n`` failed jobs from the DLQ, oldest groups first, without consuming them.

    With ``s3`` and ``output_bucket``, each job's status record is read and its
    ``error``/``message`` shown as the reason; with ``s3``, a claim check is resolved to
    its job. Every message seen is made visible again before this returns.

    SQS has no read-only look: a peek is a receive, and raises each message's receive
    count by one (which does not move it again: a DLQ has no redrive policy of its own).
    The counts returned are from before this peek."""
    if n < 1:
        raise TransflowError(f"peek needs n of at least 1, not {n}")
    seen: list[ReceivedMessage] = []
    try:
        while len(seen) < n:
            batch = _next_batch(sqs, dlq_url, n - len(seen), PEEK_VISIBILITY_SEC, wait_sec)
            if not batch:
                break
            seen.extend(batch)
    finally:
        _release(sqs, dlq_url, seen)
    jobs = []
    for message in seen[:n]:
        decoded, problem = _decode(message, s3)
        job = describe_failed(message, decoded)
        job = attrs.evolve(job, body_error=problem, receive_count=max(0, job.receive_count - 1))
        if s3 is not None and output_bucket:
            job = attrs.evolve(job, reason=_status_reason(s3, output_bucket, job))
        jobs.append(job)
    return tuple(jobs)


def _is_unsupported(response: Mapping[str, Any]) -> bool:
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return bool(response_error_codes(response) & _UNSUPPORTED) or status in (501,)


class _NoMoveTask(Exception):
    """The endpoint lacks StartMessageMoveTask: raised from botocore's retry check, since
    asking again cannot help (each retry is another 500 and, on moto, another traceback)."""


def _refuse_retry_when_unsupported(response: Any = None, **_: Any) -> None:
    if response is not None and _is_unsupported(response[1]):
        raise _NoMoveTask(", ".join(sorted(response_error_codes(response[1]))) or "?")


def _try_move_task(sqs: SQSClient, dlq_url: str, processing_url: str) -> RedriveReport | None:
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["QueueArn", "ApproximateNumberOfMessages"]
    )["Attributes"]
    target = sqs.get_queue_attributes(QueueUrl=processing_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    hook = f"needs-retry.{sqs.meta.service_model.service_name}.StartMessageMoveTask"
    sqs.meta.events.register_first(hook, _refuse_retry_when_unsupported, unique_id=hook)
    try:
        started = sqs.start_message_move_task(
            SourceArn=attributes["QueueArn"], DestinationArn=target
        )
    except (_NoMoveTask, botocore.exceptions.ClientError) as exc:
        if isinstance(exc, _NoMoveTask) or _is_unsupported(exc.response):
            log.info("the endpoint has no StartMessageMoveTask (%s); re-sending instead", exc)
            return None
        raise
    finally:
        sqs.meta.events.unregister(hook, unique_id=hook)
    return RedriveReport(
        mode="move-task",
        moved=int(attributes.get("ApproximateNumberOfMessages", "0")),
        task_handle=started["TaskHandle"],
    )


def redrive(
    sqs: SQSClient,
    dlq_url: str,
    processing_url: str,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    use_move_task: bool | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    on_progress: Callable[[RedriveProgress], None] | None = None,
    policy: RetryPolicy | None = None,
    wait_sec: int = 1,
) -> RedriveReport:
    """Move failed jobs from the DLQ back to the processing queue.

    ``use_move_task``: None (the default) asks SQS to move the messages with
    StartMessageMoveTask and falls back to re-sending when the endpoint does not have it;
    False always re-sends; True never falls back. A ``limit`` or a ``dry_run`` always
    re-sends (a move task cannot stop after N messages). A re-sent message keeps its body
    and MessageGroupId; it is deleted from the DLQ only once its send succeeded, and a
    group whose message failed to send keeps its later messages too, so order holds."""
    if limit is not None and limit < 1:
        raise TransflowError(f"redrive limit must be at least 1, not {limit}")
    if dry_run:
        jobs = peek(sqs, dlq_url, limit or _visible(sqs, dlq_url) or 1, wait_sec=wait_sec)
        return RedriveReport(mode="dry-run", moved=len(jobs), jobs=jobs)
    if use_move_task is not False and limit is None:
        if use_move_task:
            report = _try_move_task(sqs, dlq_url, processing_url)
            if report is None:
                raise TransflowError(
                    "the endpoint does not support StartMessageMoveTask; redrive with "
                    "use_move_task=None or False to re-send instead"
                )
            return report
        report = _try_move_task(sqs, dlq_url, processing_url)
        if report is not None:
            return report
        fallback = True
    else:
        fallback = False
    resent = _resend(
        sqs,
        dlq_url,
        processing_url,
        limit=limit,
        max_bytes=max_bytes,
        on_progress=on_progress,
        policy=policy,
        wait_sec=wait_sec,
    )
    return attrs.evolve(resent, no_move_task=fallback)


def _resend(
    sqs: SQSClient,
    dlq_url: str,
    processing_url: str,
    *,
    limit: int | None,
    max_bytes: int,
    on_progress: Callable[[RedriveProgress], None] | None,
    policy: RetryPolicy | None,
    wait_sec: int,
) -> RedriveReport:
    moved = 0
    failed: list[EntryFailure] = []
    kept: list[ReceivedMessage] = []  # left in the DLQ; released at the end
    attempted: set[str] = set()
    try:
        while limit is None or moved < limit:
            want = 10 if limit is None else min(10, limit - moved)
            batch = _next_batch(sqs, dlq_url, want, REDRIVE_VISIBILITY_SEC, wait_sec)
            fresh = [m for m in batch if m.message_id not in attempted]
            kept.extend(m for m in batch if m.message_id in attempted)
            if not fresh:
                break
            attempted.update(m.message_id for m in fresh)
            sent, batch_failed = _move_batch(
                sqs, dlq_url, processing_url, fresh, max_bytes=max_bytes, policy=policy
            )
            moved += len(sent)
            failed.extend(batch_failed)
            kept.extend(m for m in fresh if m.message_id not in sent)
            if on_progress is not None:
                on_progress(RedriveProgress(moved, len(failed), limit))
    finally:
        _release(sqs, dlq_url, kept)
    return RedriveReport(mode="resend", moved=moved, failed=tuple(failed))


def _move_batch(
    sqs: SQSClient,
    dlq_url: str,
    processing_url: str,
    batch: Sequence[ReceivedMessage],
    *,
    max_bytes: int,
    policy: RetryPolicy | None,
) -> tuple[set[str], list[EntryFailure]]:
    """Send one received batch and delete what was sent; (ids moved, failures).

    Sent in waves, the first message of every group, then the second, and so on: a group
    whose message failed keeps its later messages in the DLQ unsent, so order holds."""
    failures: list[EntryFailure] = []
    sendable: list[ReceivedMessage] = []
    for message in batch:
        if any(k.startswith("attr:") for k in message.attributes):
            failures.append(
                EntryFailure(
                    message.message_id,
                    "MessageAttributes",
                    "the message has message attributes, which a re-send would not carry; "
                    "redrive it with StartMessageMoveTask (the console's 'Start DLQ redrive')",
                    True,
                )
            )
        else:
            sendable.append(message)
    outgoing, refused = plan_resend(sendable)
    failures += refused
    group_of = {key: message.group_id or "" for key, message in outgoing}
    # The group of a refused message is broken too (when it has one).
    broken = {m.group_id for m in batch if m.group_id and m.message_id in {f.key for f in failures}}
    sent: list[str] = []
    waves = _waves(outgoing, group_of)
    for wave in waves:
        ready = [(key, message) for key, message in wave if group_of[key] not in broken]
        for key, _ in wave:
            if group_of[key] in broken:
                failures.append(
                    EntryFailure(
                        key,
                        "HeldForOrder",
                        "an earlier message of its group was not sent, so it stays in the "
                        "DLQ to keep the group's order",
                        False,
                    )
                )
        if not ready:
            continue
        result = send_batch(sqs, processing_url, ready, max_bytes=max_bytes, policy=policy)
        sent += result.succeeded
        failures += result.failed
        broken.update(group_of[f.key] for f in result.failed)
    handles = {m.message_id: m.receipt_handle for m in batch}
    deleted = delete_batch(sqs, dlq_url, [(key, handles[key]) for key in sent], policy=policy)
    # Sent but not deleted: it reappears in the DLQ and a later redrive sends it again with
    # the same deduplication id, which SQS drops within five minutes. Reported either way.
    failures += [
        attrs.evolve(f, message=f"sent, but still in the DLQ: {f.message}") for f in deleted.failed
    ]
    return set(deleted.succeeded), failures


def _waves(
    outgoing: Sequence[tuple[str, OutgoingMessage]], group_of: Mapping[str, str]
) -> list[list[tuple[str, OutgoingMessage]]]:
    """The n-th message of every group in wave n, each wave in received order."""
    waves: list[list[tuple[str, OutgoingMessage]]] = []
    depth: dict[str, int] = {}
    for key, message in outgoing:
        index = depth.get(group_of[key], 0)
        depth[group_of[key]] = index + 1
        if index == len(waves):
            waves.append([])
        waves[index].append((key, message))
    return waves


def purge(sqs: SQSClient, dlq_url: str, *, confirm: str) -> int:
    """Delete every message in the DLQ; returns how many there were (approximately).

    ``confirm`` must be the queue's name, as a guard against purging the wrong queue.
    SQS allows one purge per queue every 60 seconds."""
    name = dlq_url.rstrip("/").rsplit("/", 1)[-1]
    if confirm != name:
        raise ConfirmationRequiredError(
            f"purging {name} deletes every failed job in it for good; pass its name "
            f"({name!r}) as confirmation to go ahead"
        )
    count = _visible(sqs, dlq_url)
    sqs.purge_queue(QueueUrl=dlq_url)
    log.warning("purged %s (about %d messages)", name, count)
    return count


# -- announcing dead letters to the browsers watching them -----------------------------------


@attrs.frozen
class AnnounceReport:
    """What :func:`announce` did: uploads told, DLQ messages it could not tie to an upload."""

    announced: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[EntryFailure, ...] = ()


def announcement(job: FailedJob, *, now: float) -> tuple[str, OutgoingMessage] | None:
    """The final ``error`` event for a dead-lettered job, keyed by its DLQ message id, or
    None when the message names no upload and branch (nobody can be watching it).

    Its seq is taken from ``now`` (:func:`~transflow.processing.progress.first_seq`), so it
    sorts after every event of the job's runs; its deduplication id is the DLQ message's, so
    announcing the same message twice within SQS's five-minute window sends it once."""
    if not job.upload_id or not job.branch:
        return None
    reason = job.reason or job.body_error or "it failed on every delivery"
    try:
        event = ProgressEvent.create(
            ProgressType.ERROR,
            upload_id=job.upload_id,
            branch=job.branch,
            seq=first_seq(now),
            template_id=job.template_id,
            message=f"dead-lettered after {job.receive_count} deliveries: {reason}"[:1000],
            extra={"error": "DEAD_LETTERED", "retrying": False, "deadLettered": True},
        )
    except ValueError:  # an upload id no channel can carry (a forged body): nobody watches it
        return None
    dedup = "dlq-" + hashlib.sha256(job.message_id.encode()).hexdigest()[:64]
    return job.message_id, OutgoingMessage(event.to_json(), job.upload_id, dedup)


def announce(
    sqs: SQSClient,
    dlq_url: str,
    progress: ProgressDestination,
    n: int = 100,
    *,
    sns: SNSClient | None = None,
    s3: S3Client | None = None,
    output_bucket: str | None = None,
    clock: Callable[[], float] = time.time,
    policy: RetryPolicy | None = None,
) -> AnnounceReport:
    """Publish a final ``error`` progress event for up to ``n`` jobs in the dead-letter
    queue, without consuming them.

    The processor says ``retrying: false`` on what it knows is the last delivery; but a
    delivery it never saw (a ReceiveMessage whose answer was lost still counts) can be the
    one that sends a job to the DLQ, and whoever watches that upload then waits on
    "retrying" for ever. Run this on a schedule (``transflow dlq announce``) so every
    dead-lettered upload ends, for its watchers, on an error. Pass ``s3`` to resolve claim
    checks and ``output_bucket`` to quote each job's recorded error.

    The events go where progress goes, ``progress``: the progress queue, or in fan-out mode
    the SNS FIFO topic (pass ``sns``), because no hub reads the progress queue then
    (:func:`~transflow.ops.provision.resolve_progress_destination` says which); the
    deduplication ids and groups are the same either way."""
    publisher = ProgressPublisher(progress, sqs=sqs, sns=sns, policy=policy or RetryPolicy())
    jobs = peek(sqs, dlq_url, n, s3=s3, output_bucket=output_bucket)
    now = clock()
    messages: list[tuple[str, OutgoingMessage]] = []
    skipped: list[str] = []
    uploads: dict[str, str] = {}
    for job in jobs:
        planned = announcement(job, now=now)
        if planned is None:
            skipped.append(job.message_id)
            continue
        messages.append(planned)
        uploads[job.message_id] = job.upload_id or ""
    if not messages:
        return AnnounceReport(skipped=tuple(skipped))
    result = publisher.publish(messages)
    return AnnounceReport(
        announced=tuple(uploads[key] for key in result.succeeded),
        skipped=tuple(skipped),
        failed=result.failed,
    )
