"""The stale-upload sweep and the scheduled recovery example, on the moto server."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING

import pytest
import requests

from examples import lambda_recovery
from transflow import ProgressQueue, UploadFile, UserContext, create_upload
from transflow._wire.keys import status_key
from transflow.cli.local import LocalAws, local_client_config
from transflow.ops.recovery import (
    INCOMPLETE_ERROR,
    StaleUploadReport,
    quiet_folders,
    sweep_stale_uploads,
)
from transflow.processing.status import AssemblyStatus
from transflow.processing.storage import read_status_record as load_status

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

BUCKET = "uploads"


def post(file: object, content: bytes = b"RIFF") -> None:
    url, fields, name = file.url, dict(file.fields), file.name  # type: ignore[attr-defined]
    requests.post(url, data=fields, files={"file": (name, content)}, timeout=10).raise_for_status()


def upload(s3: S3Client, count: int, arrived: int, user: str | None = None) -> str:
    ticket = create_upload(
        s3,
        bucket=BUCKET,
        branch="main",
        template_id="audio-processing",
        files=[UploadFile(f"f{n}.wav", "audio/wav") for n in range(count)],
        user=UserContext(user) if user else None,
    )
    for file in ticket.files[:arrived]:
        post(file)
    return ticket.upload_id


def drain(sqs: SQSClient, url: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        found += [json.loads(m["Body"]) for m in batch]
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def test_an_upload_whose_files_stopped_arriving_ends_on_an_error_once(aws: LocalAws) -> None:
    s3 = aws.s3(local_client_config(signature_version="s3v4"))
    sqs = aws.sqs()
    s3.create_bucket(Bucket=BUCKET)
    progress = sqs.create_queue(
        QueueName="myapp-main-progress.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    stale = upload(s3, 3, 2)
    stale_of_user = upload(s3, 2, 1, user="u-7")
    complete = upload(s3, 2, 2)
    processed = upload(s3, 3, 1)  # the processor has a record for it (a job of its own)
    key = status_key("main", processed)
    record = AssemblyStatus(processed, processed, "audio-processing", "main", None, "fp", 1, "t")
    s3.put_object(Bucket=BUCKET, Key=key, Body=record.to_json().encode())

    def sweep(after: float) -> StaleUploadReport:
        return sweep_stale_uploads(
            s3,
            sqs,
            upload_bucket=BUCKET,
            output_bucket=BUCKET,
            progress=ProgressQueue(progress),
            branch="main",
            clock=lambda: time.time() + after,
        )

    young = sweep(after=600)  # ten minutes: nothing is stale yet
    assert young.failed == ()
    assert drain(sqs, progress) == []

    report = sweep(after=3700)
    assert sorted(u.upload_id for u in report.failed) == sorted([stale, stale_of_user])
    assert report.closed == (processed,)
    assert report.problems == ()
    events = {e["uploadId"]: e for e in drain(sqs, progress)}
    assert set(events) == {stale, stale_of_user}
    event = events[stale]
    assert event["type"] == "error"
    assert event["channel"] == f"upload:main:{stale}"
    assert event["error"] == INCOMPLETE_ERROR
    assert event["retrying"] is False
    assert (event["arrived"], event["expected"]) == (2, 3)
    for upload_id, user in ((stale, None), (stale_of_user, "u-7")):
        status = load_status(s3, BUCKET, status_key("main", upload_id, user))
        assert status is not None
        assert status.error == INCOMPLETE_ERROR
        assert not status.completed
    assert complete not in {u.upload_id for u in report.failed}

    again = sweep(after=3800)  # idempotent: nothing new
    assert again.failed == ()
    assert sorted(again.closed) == sorted([stale, stale_of_user, processed])
    assert drain(sqs, progress) == []


def test_quiet_folders_by_age_and_horizon() -> None:
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    hours = dt.timedelta(hours=1)
    objects = [
        ("uploads/main/a/1.wav", now - 2 * hours),
        ("uploads/main/a/2.wav", now - 3 * hours),
        ("uploads/main/b/1.wav", now - 2 * hours),
        ("uploads/main/b/2.wav", now - dt.timedelta(minutes=5)),  # b is still receiving
        ("uploads/main/c/1.wav", now - 30 * 24 * hours),  # beyond the horizon
        ("loose-key", now - 2 * hours),
    ]
    (folder,) = quiet_folders(objects, now=now)
    assert folder.prefix == "uploads/main/a/"
    assert folder.keys == ("uploads/main/a/1.wav", "uploads/main/a/2.wav")
    assert folder.last_arrival == now - 2 * hours


@pytest.mark.usefixtures("aws")  # the example's endpoint shares moto's state: start clean
def test_the_recovery_example_fails_a_stale_upload_once() -> None:
    first, second = lambda_recovery.main()
    assert len(first["staleUploads"]) == 1
    assert first["announced"] == []
    assert first["problems"] == []
    assert second["staleUploads"] == []
    assert second["alreadyClosed"] == first["staleUploads"]


def test_a_record_written_while_the_sweep_fails_the_upload_is_kept(aws: LocalAws) -> None:
    # Issue 21: the processor completes the upload between the sweep's read of the status
    # record and its write; the sweep's write is conditional and the completed record stays.
    s3 = aws.s3(local_client_config(signature_version="s3v4"))
    processor_s3 = aws.s3()
    sqs = aws.sqs()
    s3.create_bucket(Bucket=BUCKET)
    progress = sqs.create_queue(
        QueueName="myapp-main-progress.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    racing = upload(s3, 3, 2)
    key = status_key("main", racing)
    completed = AssemblyStatus(
        racing, racing, "audio-processing", "main", None, "fp", 1, "t", ok="ASSEMBLY_COMPLETED"
    )
    raced: list[str] = []

    def complete_first(params: dict[str, object], **_: object) -> None:
        if params.get("Key") == key and not raced:
            raced.append(str(params.get("IfNoneMatch")))
            processor_s3.put_object(Bucket=BUCKET, Key=key, Body=completed.to_json().encode())

    s3.meta.events.register("provide-client-params.s3.PutObject", complete_first)
    report = sweep_stale_uploads(
        s3,
        sqs,
        upload_bucket=BUCKET,
        output_bucket=BUCKET,
        progress=ProgressQueue(progress),
        branch="main",
        clock=lambda: time.time() + 3700,
    )
    stored = load_status(s3, BUCKET, key)
    assert stored is not None
    assert (stored.ok, stored.error) == ("ASSEMBLY_COMPLETED", None)  # moto honours the 412
    assert raced == ["*"]  # the sweep's write was conditional
    assert report.failed == ()
    assert report.closed == (racing,)
