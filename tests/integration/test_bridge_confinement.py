"""On the moto server (issue 13): the bridge makes jobs of its own bucket's canonical keys
only, with the uploader's folder name, and presigned POSTs pin their key."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.support.bridge import (
    BUCKET,
    bridge,
    fifo,
    jobs_on,
    notifying_bucket,
    post_files,
    receive_notifications,
)
from tests.support.endpoint import on_other_endpoint
from transflow import ConfigError, GroupingBridge, UploadFile, UserContext, create_upload
from transflow._wire.channels import upload_channel
from transflow._wire.keys import job_output_prefix, user_folder

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def record(message_id: str, key: str, bucket: str = BUCKET) -> dict[str, Any]:
    body = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
        ]
    }
    return {
        "messageId": message_id,
        "receiptHandle": "rh",
        "body": json.dumps(body),
        "eventSource": "aws:sqs",
    }


def put(s3: S3Client, key: str, upload_id: str, bucket: str = BUCKET) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=b"x",
        Metadata={"templateid": "t", "uploadid": upload_id},
    )


def test_hostile_branches_and_foreign_buckets_fail_alone(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="elsewhere")
    url = fifo(sqs)
    keys = {
        "good": "uploads/main/ok/a.wav",
        "colon": "uploads/main:evil/colon/a.wav",
        "dots": "uploads/../dots/a.wav",
        "upper": "uploads/Main/upper/a.wav",
    }
    for message_id, key in keys.items():
        put(s3, key, message_id)
    put(s3, "uploads/main/other/a.wav", "other", bucket="elsewhere")
    event = {
        "Records": [
            *(record(m, k) for m, k in keys.items()),
            record("other", "uploads/main/other/a.wav", bucket="elsewhere"),
        ]
    }
    the_bridge = bridge(sqs, s3, url, upload_bucket=BUCKET)

    response = the_bridge.lambda_handler(event, None)

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        "colon",
        "dots",
        "upper",
        "other",
    ]
    result = the_bridge.handle(event)
    reasons = {f.message_id: f.reason for f in result.failed}
    assert all("canonical branch" in reasons[m] for m in ("colon", "dots", "upper"))
    assert "not the upload bucket 'uploads'" in reasons["other"]
    assert not any(f.retryable for f in result.failed)
    (job,) = jobs_on(sqs, url)  # sent twice, kept once: the one good upload
    assert job.upload_id == "good"
    assert upload_channel(job.branch, job.upload_id) == "upload:main:good"


def test_the_upload_bucket_is_required_never_every_bucket(sqs: SQSClient, s3: S3Client) -> None:
    # Issue 21: there is no "any bucket" default any more.
    with pytest.raises(TypeError, match="upload_bucket"):
        GroupingBridge(sqs, s3, queue_url="q")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="upload_bucket"):
        GroupingBridge(sqs, s3, queue_url="q", upload_bucket=None)  # type: ignore[arg-type]
    s3.create_bucket(Bucket="elsewhere")
    url = fifo(sqs)
    put(s3, "uploads/main/other/a.wav", "other", bucket="elsewhere")
    result = bridge(sqs, s3, url).handle(
        {"Records": [record("other", "uploads/main/other/a.wav", bucket="elsewhere")]}
    )
    assert [f.key for f in result.failed] == ["uploads/main/other/a.wav"]
    assert jobs_on(sqs, url) == []


def test_a_hostile_user_id_uploads_and_outputs_in_its_own_folder(
    sqs: SQSClient,
    s3v4: S3Client,
) -> None:
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    ticket = create_upload(
        s3v4,
        bucket=BUCKET,
        branch="main",
        template_id="t",
        files=[UploadFile("a.wav", "audio/wav")],
        user=UserContext("victim/../x"),
    )
    post_files(ticket.files, [b"RIFF"])
    notifications = receive_notifications(sqs, events_url, 1)
    event = {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
            for m in notifications
        ]
    }
    assert bridge(sqs, s3v4, url, upload_bucket=BUCKET).handle(event).failed == ()
    (job,) = jobs_on(sqs, url)
    folder = user_folder("victim/../x")
    assert job.user is not None
    assert job.user.user_id == folder
    assert ticket.prefix == f"uploads/main/users/{folder}/{ticket.upload_id}/"
    assert job_output_prefix(job) == f"outputs/main/users/{folder}/{ticket.upload_id}/"


def test_a_post_to_another_key_of_the_upload(s3v4: S3Client) -> None:
    s3v4.create_bucket(Bucket=BUCKET)
    ticket = create_upload(
        s3v4, bucket=BUCKET, branch="main", template_id="t", files=["${filename}"]
    )
    (file,) = ticket.files
    assert file.key == f"{ticket.prefix}{file.key.rsplit('/', 1)[1]}"
    assert "$" not in file.key
    forged = {**file.fields, "key": ticket.prefix + "other.wav"}
    response = requests.post(file.url, data=forged, files={"file": ("x.wav", b"RIFF")}, timeout=10)
    stored = [o["Key"] for o in s3v4.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    if on_other_endpoint():
        # LocalStack checks the POST policy like S3: {"key": exact} refuses the forged key.
        assert response.status_code == 403
        assert stored == []
        return
    # moto does not check POST policies (it stores the forged key: 204); real S3 answers
    # 403 AccessDenied because the policy pins {"key": exact}, which the unit tests decode.
    # This test records moto's behaviour so that the day it enforces policies, it fails
    # here and the assertion becomes the refusal.
    assert response.status_code == 204
    assert stored == [ticket.prefix + "other.wav"]
