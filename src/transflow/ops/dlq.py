"""The dead-letter queue: look at failed jobs, or throw them away.

:func:`peek` shows failed jobs without consuming them: it receives with a short visibility
and releases every message it saw at once. :func:`purge` empties the queue, and only with the
queue's name as confirmation. Sending failed jobs back is :mod:`transflow.ops.redrive`;
telling their watchers they ended is :mod:`transflow.ops.announce`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs
import botocore.exceptions

from transflow._aws.claimcheck import ClaimCheck, decode_job_message, load_claimed_job
from transflow._aws.s3 import error_code, is_not_found
from transflow._aws.sqs_batch import change_visibility_batch
from transflow._wire.jsontext import JsonTextError, parse_json
from transflow._wire.keys import folder_status_key
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProcessingJob
from transflow.errors import ConfirmationRequiredError, JobFormatError, TransflowError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = ["FailedJob", "describe_failed", "peek", "purge", "reason_from_status"]

log = logging.getLogger(__name__)

PEEK_VISIBILITY_SEC = 30
"""How long peeked messages are hidden if releasing them fails (normally they are released
at once)."""


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


# -- decisions ----------------------------------------------------------------------------


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
        # Message attributes ride along as "attr:{name}" so a redrive can refuse what a
        # re-send cannot carry; transflow's own messages have none.
        extra = {
            f"attr:{name}": str(value.get("DataType", "")) for name, value in attributes.items()
        }
        received = attrs.evolve(received, attributes={**received.attributes, **extra})
    return received


def visible_count(sqs: SQSClient, url: str) -> int:
    """The queue's ApproximateNumberOfMessages (visible ones only)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def next_batch(
    sqs: SQSClient, url: str, count: int, visibility: int, wait_sec: int
) -> list[ReceivedMessage]:
    """A batch, short-polled first; an empty answer while the queue says it has visible
    messages gets one long poll, so a run ends promptly on an empty queue."""
    batch = _receive(sqs, url, count, visibility, 0)
    if batch or wait_sec <= 0 or visible_count(sqs, url) == 0:
        return batch
    return _receive(sqs, url, count, visibility, wait_sec)


def release(sqs: SQSClient, url: str, messages: Iterable[ReceivedMessage]) -> None:
    """Make received messages visible again at once; what cannot be is logged, not raised
    (it reappears when its visibility timeout ends)."""
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
            batch = next_batch(sqs, dlq_url, n - len(seen), PEEK_VISIBILITY_SEC, wait_sec)
            if not batch:
                break
            seen.extend(batch)
    finally:
        release(sqs, dlq_url, seen)
    jobs = []
    for message in seen[:n]:
        decoded, problem = _decode(message, s3)
        job = describe_failed(message, decoded)
        job = attrs.evolve(job, body_error=problem, receive_count=max(0, job.receive_count - 1))
        if s3 is not None and output_bucket:
            job = attrs.evolve(job, reason=_status_reason(s3, output_bucket, job))
        jobs.append(job)
    return tuple(jobs)


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
    count = visible_count(sqs, dlq_url)
    sqs.purge_queue(QueueUrl=dlq_url)
    log.warning("purged %s (about %d messages)", name, count)
    return count
