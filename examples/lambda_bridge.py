"""The grouping bridge as a Lambda function: copy this file into your project.

Wire S3 "object created" notifications for the ``uploads/`` prefix of your upload bucket to a
*standard* SQS queue (S3 cannot notify a FIFO queue), and that queue to this function with
``ReportBatchItemFailures`` enabled and a redrive policy to a dead-letter queue. Environment:

- ``SQS_QUEUE_URL``: the FIFO processing queue (``{project}-{branch}-processing.fifo``);
- ``TRANSFLOW_UPLOAD_BUCKET``: the upload bucket; notifications for any other bucket are
  refused (failed records, never jobs);
- ``TRANSFLOW_CLAIMS_BUCKET`` (optional): where jobs too large for a message are stored;
  the upload bucket when unset;
- ``TRANSFLOW_BRANCH`` (optional): the branch of objects whose key does not name one.

Run the demo against the embedded endpoint (needs the ``local`` and ``dev`` extras):

    python -m examples.lambda_bridge
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import boto3
from botocore.config import Config

from transflow import BridgeResponse, GroupingBridge


@functools.cache
def _bridge() -> GroupingBridge:
    # Built once per cold start, not at import: tests and tools can import this module
    # without credentials, and each warm invocation reuses the clients' connections.
    config = Config(retries={"mode": "standard"}, max_pool_connections=32)
    return GroupingBridge(
        boto3.client("sqs", config=config),
        boto3.client("s3", config=config),
        queue_url=os.environ["SQS_QUEUE_URL"],
        upload_bucket=os.environ["TRANSFLOW_UPLOAD_BUCKET"],
        claim_bucket=os.environ.get("TRANSFLOW_CLAIMS_BUCKET") or None,
        default_branch=os.environ.get("TRANSFLOW_BRANCH", "main"),
        head_concurrency=16,
    )


def handler(event: dict[str, Any], context: Any) -> BridgeResponse:
    """The Lambda entry point: ``{"batchItemFailures": [...]}`` for SQS events."""
    return _bridge().lambda_handler(event, context)


def main() -> list[str]:
    """Upload two files through presigned POSTs and run the handler on the notifications."""
    # The demo's imports stay here, out of the handler's cold start.
    import requests  # noqa: PLC0415 - the browser's part of the demo; a dev dependency

    from transflow import ProcessingJob, UploadFile, create_upload  # noqa: PLC0415
    from transflow.cli.local import LocalAws, local_client_config  # noqa: PLC0415

    with LocalAws() as aws:
        s3 = aws.s3(local_client_config(signature_version="s3v4"))
        sqs = aws.sqs()
        s3.create_bucket(Bucket="uploads")
        events_url = sqs.create_queue(QueueName="uploads-events")["QueueUrl"]
        events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket="uploads",
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": events_arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        jobs_url = sqs.create_queue(
            QueueName="myapp-main-processing.fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]

        ticket = create_upload(
            s3,
            bucket="uploads",
            branch="main",
            template_id="audio-processing",
            files=[UploadFile("take 1.wav", "audio/wav"), UploadFile("take 2.wav", "audio/wav")],
            allowed_content_types=["audio/*"],
            max_file_size=1024 * 1024,
        )
        for file in ticket.files:  # what the browser does with the ticket
            requests.post(
                file.url,
                data=dict(file.fields),
                files={"file": (file.name, b"RIFF....WAVE", file.content_type or "audio/wav")},
                timeout=10,
            ).raise_for_status()

        received: list[Any] = []
        deadline = time.monotonic() + 10
        while sum("ObjectCreated" in m["Body"] for m in received) < len(ticket.files):
            if time.monotonic() > deadline:
                raise TimeoutError("S3 notifications did not arrive")
            received += sqs.receive_message(
                QueueUrl=events_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "eventSource": "aws:sqs",
                }
                for m in received
            ]
        }
        _bridge.cache_clear()
        env = {
            "SQS_QUEUE_URL": jobs_url,
            "TRANSFLOW_UPLOAD_BUCKET": "uploads",
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_DEFAULT_REGION": aws.region,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            print("handler returned", json.dumps(handler(event, None)))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _bridge.cache_clear()
        messages = sqs.receive_message(QueueUrl=jobs_url, MaxNumberOfMessages=10)["Messages"]
        keys: list[str] = []
        for message in messages:
            # Two small files: the job is in the message (a large one would be a claim
            # check, which the processor resolves).
            job = ProcessingJob.from_json(message["Body"])
            print("queued", job.upload_id, [o.key for o in job.objects])
            keys.extend(o.key for o in job.objects)
        return keys


if __name__ == "__main__":
    main()
