"""Scheduled recovery: uploads whose files stopped arriving end on an error, not in silence.

An upload made with :func:`transflow.create_upload` says in each file's metadata how many
files it has; the bridge emits its job when the last one arrives. When a browser gives up
half-way, no job is ever sent, and whoever watches the upload's channel waits for ever.
:func:`sweep_stale_uploads` finds such uploads (fewer objects than their file count, none
newer than ``max_age``), publishes a final ``error`` progress event for each and writes a
failed status record (``error: UPLOAD_INCOMPLETE``). The status record is also what makes the
sweep idempotent: an upload that has one (from the processor or an earlier sweep) is left
alone, and the sweep writes its record only if there is still none (a conditional PUT,
``If-None-Match: *``), so a processor that completes the upload between the sweep's read and
its write keeps its record. A file that still arrives later makes the bridge send the job as
usual, and the processor then overwrites the failed record.

Run it on a schedule next to :func:`transflow.ops.announce.announce` (the SAM template's
recovery function does both; see examples/lambda_recovery.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import attrs
import botocore.exceptions

from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage
from transflow._wire.keys import status_key
from transflow._wire.model import ProgressEvent, ProgressType, format_timestamp
from transflow._wire.naming import sanitize_branch
from transflow.errors import UploadMetadataError
from transflow.ingest.metadata import read_upload_metadata
from transflow.processing.destination import ProgressDestination
from transflow.processing.progress import ProgressPublisher, first_seq
from transflow.processing.status import AssemblyStatus, now_text
from transflow.processing.storage import S3JobStorage, StatusConflict, read_status_record

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_MAX_AGE",
    "INCOMPLETE_ERROR",
    "QuietFolder",
    "StaleUpload",
    "StaleUploadReport",
    "quiet_folders",
    "sweep_stale_uploads",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = dt.timedelta(hours=1)
"""How long an upload may wait for its next file before the sweep fails it."""
DEFAULT_HORIZON = dt.timedelta(days=7)
"""Folders quiet for longer than this are not looked at again (they were swept long ago),
which bounds the requests of one sweep."""
INCOMPLETE_ERROR = "UPLOAD_INCOMPLETE"
"""The ``error`` code of the event and status record the sweep writes."""


@attrs.frozen
class QuietFolder:
    """A folder of uploaded objects in which nothing arrived for a while."""

    prefix: str
    keys: tuple[str, ...]
    last_arrival: dt.datetime


@attrs.frozen
class StaleUpload:
    """An upload the sweep failed: ``arrived`` of ``expected`` files."""

    upload_id: str
    branch: str
    template_id: str
    user_id: str | None
    prefix: str
    arrived: int
    expected: int
    last_arrival: dt.datetime


@attrs.frozen
class StaleUploadReport:
    """What one sweep did. ``failed`` are the uploads it closed now; ``closed`` those that
    already had a status record; ``problems`` folders it could not judge, and why."""

    examined: int = 0
    failed: tuple[StaleUpload, ...] = ()
    closed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def quiet_folders(
    objects: Iterable[tuple[str, dt.datetime]],
    *,
    now: dt.datetime,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
    horizon: dt.timedelta = DEFAULT_HORIZON,
) -> list[QuietFolder]:
    """Group ``(key, last_modified)`` by folder and keep the folders whose newest object is
    older than ``max_age`` but not older than ``horizon``. Pure."""
    folders: dict[str, tuple[list[str], dt.datetime]] = {}
    for key, modified in objects:
        folder, slash, _name = key.rpartition("/")
        if not slash:
            continue
        keys, newest = folders.get(folder + "/", ([], modified))
        keys.append(key)
        folders[folder + "/"] = (keys, max(newest, modified))
    return [
        QuietFolder(prefix, tuple(sorted(keys)), newest)
        for prefix, (keys, newest) in sorted(folders.items())
        if max_age <= now - newest <= horizon
    ]


def _listing(s3: S3Client, bucket: str, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"], obj["LastModified"]


def _judge(s3: S3Client, bucket: str, folder: QuietFolder) -> StaleUpload | str | None:
    """The folder as a stale upload, None when it is not one (complete, or not made with a
    ticket), or a problem."""
    head = s3.head_object(Bucket=bucket, Key=folder.keys[0])
    try:
        meta = read_upload_metadata(folder.keys[0], head.get("Metadata", {}))
    except UploadMetadataError as exc:
        return f"{folder.prefix}: unreadable upload metadata ({'; '.join(exc.problems)})"
    if meta.upload_id is None or meta.file_count is None:
        return None  # no ticket's file count: the bridge never waits for such files
    if len(folder.keys) >= meta.file_count:
        return None  # complete: the bridge sent its job
    if folder.prefix.rstrip("/").rpartition("/")[2] != meta.upload_id:
        return f"{folder.prefix}: holds files of upload {meta.upload_id!r}; not the ticket layout"
    branch = sanitize_branch(folder.prefix.split("/")[1])
    return StaleUpload(
        meta.upload_id,
        branch,
        meta.template_id,
        meta.user_id,
        folder.prefix,
        len(folder.keys),
        meta.file_count,
        folder.last_arrival,
    )


def _message(upload: StaleUpload) -> str:
    return (
        f"only {upload.arrived} of {upload.expected} files arrived; none since "
        f"{format_timestamp(upload.last_arrival)}: upload the files again with a new ticket"
    )


def _event(upload: StaleUpload, now: float) -> tuple[str, OutgoingMessage]:
    event = ProgressEvent.create(
        ProgressType.ERROR,
        upload_id=upload.upload_id,
        branch=upload.branch,
        seq=first_seq(now),
        template_id=upload.template_id,
        message=_message(upload),
        extra={
            "error": INCOMPLETE_ERROR,
            "retrying": False,
            "arrived": upload.arrived,
            "expected": upload.expected,
        },
    )
    # One id per upload and arrival state: a sweep retried within SQS's five minutes sends once.
    dedup = hashlib.sha256(f"stale\0{upload.prefix}\0{upload.arrived}".encode()).hexdigest()
    return upload.prefix, OutgoingMessage(event.to_json(), upload.upload_id, dedup)


def _record(upload: StaleUpload, message: str) -> AssemblyStatus:
    stamp = now_text()
    return AssemblyStatus(
        assembly_id=upload.upload_id,
        upload_id=upload.upload_id,
        template_id=upload.template_id,
        branch=upload.branch,
        user=upload.user_id,
        job_fingerprint="",
        attempt=0,
        execution_start=stamp,
        error=INCOMPLETE_ERROR,
        message=message,
        last_updated=stamp,
    )


def sweep_stale_uploads(
    s3: S3Client,
    sqs: SQSClient,
    *,
    upload_bucket: str,
    output_bucket: str,
    progress: ProgressDestination,
    sns: SNSClient | None = None,
    branch: str,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
    horizon: dt.timedelta = DEFAULT_HORIZON,
    clock: Callable[[], float] = time.time,
    policy: RetryPolicy | None = None,
) -> StaleUploadReport:
    """Fail every upload of ``branch`` whose files stopped arriving ``max_age`` ago.

    For each: a final ``error`` event (``error: UPLOAD_INCOMPLETE``, ``retrying: false``) on
    ``progress`` (the progress queue, or in fan-out mode the SNS FIFO topic: pass ``sns``
    too), then a failed status record in ``output_bucket``. Idempotent: an
    upload with a status record is left alone, so a second sweep does nothing new. The event
    goes first: if the record then fails to be written, the next sweep tries both again.

    In fan-out mode the events reach every hub instance, with the same deduplication ids
    and groups."""
    publisher = ProgressPublisher(progress, sqs=sqs, sns=sns, policy=policy or RetryPolicy())
    now = clock()
    folders = quiet_folders(
        _listing(s3, upload_bucket, f"uploads/{sanitize_branch(branch)}/"),
        now=dt.datetime.fromtimestamp(now, dt.timezone.utc),
        max_age=max_age,
        horizon=horizon,
    )
    stale: list[StaleUpload] = []
    closed: list[str] = []
    problems: list[str] = []
    for folder in folders:
        try:
            judged = _judge(s3, upload_bucket, folder)
            if not isinstance(judged, StaleUpload):
                if judged is not None:
                    problems.append(judged)
                continue
            key = status_key(judged.branch, judged.upload_id, judged.user_id)
            if read_status_record(s3, output_bucket, key) is not None:
                closed.append(judged.upload_id)
                continue
        except botocore.exceptions.ClientError as exc:
            problems.append(f"{folder.prefix}: {exc}")
            continue
        stale.append(judged)
    failed = _close(
        s3, publisher, stale, output_bucket=output_bucket, now=now, problems=problems, closed=closed
    )
    report = StaleUploadReport(len(folders), tuple(failed), tuple(closed), tuple(problems))
    log.info(
        "stale-upload sweep: %d quiet folder(s), %d upload(s) failed now, %d already closed, "
        "%d problem(s)",
        report.examined,
        len(report.failed),
        len(report.closed),
        len(report.problems),
    )
    for problem in problems:
        log.warning("stale-upload sweep: %s", problem)
    return report


def _close(
    s3: S3Client,
    publisher: ProgressPublisher,
    stale: Sequence[StaleUpload],
    *,
    output_bucket: str,
    now: float,
    problems: list[str],
    closed: list[str],
) -> list[StaleUpload]:
    if not stale:
        return []
    events = [_event(upload, now) for upload in stale]
    sent = publisher.publish(events)
    for failure in sent.failed:
        problems.append(f"{failure.key}: error event not sent ({failure.code})")
    delivered = set(sent.succeeded)
    failed: list[StaleUpload] = []
    for upload in stale:
        if upload.prefix not in delivered:
            continue
        key = status_key(upload.branch, upload.upload_id, upload.user_id)
        try:
            S3JobStorage(s3).put_status_record(
                output_bucket, key, _record(upload, _message(upload)), if_match=None
            )
        except StatusConflict:
            # The processor (or another sweep) wrote the record since it was read: it stays.
            log.warning(
                "stale-upload sweep: upload %s got a status record while it was being "
                "failed; that record is kept (its error event was already sent)",
                upload.upload_id,
            )
            closed.append(upload.upload_id)
            continue
        except botocore.exceptions.ClientError as exc:
            problems.append(f"upload {upload.upload_id}: status record not written ({exc})")
            continue
        failed.append(upload)
    return failed
