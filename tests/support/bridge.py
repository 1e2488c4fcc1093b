"""The bridge's world on the moto server: a bucket that notifies a standard queue, the FIFO
processing queue, Lambda events from received notifications, uploads posted as a browser does."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import requests

from transflow import GroupingBridge, ProcessingJob
from transflow._aws.claimcheck import decode_job_message
from transflow._aws.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=4, initial=0.001, maximum=0.01)
BUCKET = "uploads"


def fifo(sqs: SQSClient, name: str = "myapp-main-processing.fifo") -> str:
    return sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]


def bridge(sqs: SQSClient, s3: S3Client, url: str, **kwargs: Any) -> GroupingBridge:
    kwargs.setdefault("upload_bucket", BUCKET)
    return GroupingBridge(sqs, s3, queue_url=url, retry=FAST, **kwargs)


def drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """Every message on the queue (bodies and system attributes), deleting as it goes."""
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return out
        out.extend(dict(m) for m in batch)
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def jobs_on(sqs: SQSClient, url: str) -> list[ProcessingJob]:
    found = []
    for message in drain(sqs, url):
        decoded = decode_job_message(message["Body"])
        assert isinstance(decoded, ProcessingJob)
        assert message["Attributes"]["MessageGroupId"] == decoded.upload_id
        found.append(decoded)
    return found


def notifying_bucket(sqs: SQSClient, s3: S3Client, bucket: str = BUCKET) -> str:
    """A bucket whose object-created notifications go to a standard queue (S3 cannot
    notify a FIFO queue). Returns the queue URL."""
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=f"{bucket}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    return url


def lambda_event(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event as Lambda builds it from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads-events",
            }
            for m in messages
        ]
    }


def receive_notifications(sqs: SQSClient, url: str, count: int) -> list[dict[str, Any]]:
    """Wait (with a deadline, never a sleep) for ``count`` object-created notifications."""
    deadline = time.monotonic() + 20
    found: list[dict[str, Any]] = []
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} of {count} notifications"
        for message in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if "s3:TestEvent" not in message["Body"]:
                found.append(dict(message))
    return found


def post_files(ticket_files: Sequence[Any], contents: Sequence[bytes]) -> None:
    """Upload as a browser does: multipart/form-data, the policy's fields then the file."""
    for file, content in zip(ticket_files, contents, strict=True):
        response = requests.post(
            file.url,
            data=dict(file.fields),
            files={"file": (file.name, content, file.content_type or "application/octet-stream")},
            timeout=10,
        )
        assert response.status_code in (200, 201, 204), response.text


def put_upload_object(
    s3: S3Client, key: str, upload_id: str | None, *, count: int | None = None
) -> None:
    metadata = {"templateid": "audio-processing"}
    if upload_id is not None:
        metadata["uploadid"] = upload_id
    if count is not None:
        metadata["filecount"] = str(count)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"data", Metadata=metadata)
