"""Announcing dead letters to the browsers watching them: a final ``error`` progress event
for every job in the dead-letter queue, so no watcher waits on "retrying" for ever.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import EntryFailure, OutgoingMessage
from transflow._wire.model import ProgressEvent, ProgressType
from transflow.ops.dlq import FailedJob, peek
from transflow.processing.destination import ProgressDestination
from transflow.processing.progress import ProgressPublisher, first_seq

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["AnnounceReport", "announce", "announcement"]


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
