"""The scheduled recovery as a Lambda function: copy this file into your project.

Run it on a schedule (the SAM template's ``RecoveryFunction`` runs it every 15 minutes from
EventBridge). Each run:

- announces every dead-lettered job with a final ``error`` event
  (:func:`transflow.ops.announce.announce`), so its watchers stop waiting;
- fails every upload whose files stopped arriving with an ``UPLOAD_INCOMPLETE`` event and
  status record (:func:`transflow.ops.recovery.sweep_stale_uploads`).

Both are idempotent, so a run that overlaps or repeats another does no harm. The final
events go where progress goes (:func:`transflow.ops.provision.resolve_progress_destination`):
the progress queue, or in fan-out mode the SNS FIFO topic, which is the only way they reach
the hub instances' queues. Environment (the SAM template sets it; :func:`transflow.load_config`
reads it):

- ``TRANSFLOW_PROJECT``, ``TRANSFLOW_BRANCH``, ``SQS_QUEUE_URL``, ``SQS_DLQ_URL``,
  ``SQS_PROGRESS_QUEUE_URL``; in fan-out mode ``SNS_PROGRESS_TOPIC_ARN``;
- ``TRANSFLOW_UPLOAD_BUCKET``, ``TRANSFLOW_OUTPUT_BUCKET``;
- ``TRANSFLOW_STALE_UPLOAD_AGE_SEC`` (optional, default 3600).

Run the demo against the embedded endpoint (needs the ``local`` and ``dev`` extras):

    python -m examples.lambda_recovery
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
from typing import Any

import boto3
from botocore.config import Config

from transflow import load_config
from transflow.ops.announce import announce
from transflow.ops.provision import resolve_progress_destination, resolve_queue_urls
from transflow.ops.recovery import sweep_stale_uploads


@functools.cache
def _clients() -> tuple[Any, Any, Any]:
    config = Config(retries={"mode": "standard"})
    return (
        boto3.client("sqs", config=config),
        boto3.client("s3", config=config),
        boto3.client("sns", config=config),
    )


def handler(event: dict[str, Any], context: Any, *, clock: Any = time.time) -> dict[str, Any]:
    """The Lambda entry point: what was announced and swept, for the function's log."""
    sqs, s3, sns = _clients()
    config = load_config()
    progress = resolve_progress_destination(sqs, config, sns=sns)
    output_bucket = os.environ["TRANSFLOW_OUTPUT_BUCKET"]
    announced = announce(
        sqs,
        resolve_queue_urls(sqs, config).dlq,
        progress,
        sns=sns,
        s3=s3,
        output_bucket=output_bucket,
        clock=clock,
    )
    swept = sweep_stale_uploads(
        s3,
        sqs,
        upload_bucket=os.environ["TRANSFLOW_UPLOAD_BUCKET"],
        output_bucket=output_bucket,
        progress=progress,
        sns=sns,
        branch=config.branch,
        max_age=dt.timedelta(seconds=int(os.environ.get("TRANSFLOW_STALE_UPLOAD_AGE_SEC", "3600"))),
        clock=clock,
    )
    summary = {
        "announced": list(announced.announced),
        "staleUploads": [u.upload_id for u in swept.failed],
        "alreadyClosed": list(swept.closed),
        "problems": list(swept.problems),
    }
    print(json.dumps(summary))
    return summary


def main() -> list[dict[str, Any]]:
    """An upload of two files of which only one arrives; two runs an hour and a half later."""
    # The demo's imports stay here: the handler needs none of them (requests is not even a
    # dependency of transflow, only of its dev extra).
    import requests  # noqa: PLC0415

    from transflow import UploadFile, create_upload  # noqa: PLC0415
    from transflow.cli.local import LocalAws, local_client_config  # noqa: PLC0415

    with LocalAws() as aws:
        s3 = aws.s3(local_client_config(signature_version="s3v4"))
        sqs = aws.sqs()
        s3.create_bucket(Bucket="uploads")
        urls: dict[str, str] = {}
        for name in ("processing", "progress", "dlq"):
            created = sqs.create_queue(
                QueueName=f"myapp-main-{name}.fifo", Attributes={"FifoQueue": "true"}
            )
            urls[name] = created["QueueUrl"]
        ticket = create_upload(
            s3,
            bucket="uploads",
            branch="main",
            template_id="audio-processing",
            files=[UploadFile("a.wav", "audio/wav"), UploadFile("b.wav", "audio/wav")],
        )
        first = ticket.files[0]  # the browser gave up after the first file
        requests.post(
            first.url, data=dict(first.fields), files={"file": ("a.wav", b"RIFF")}, timeout=10
        ).raise_for_status()

        env = {
            "TRANSFLOW_PROJECT": "myapp",
            "SQS_QUEUE_URL": urls["processing"],
            "SQS_DLQ_URL": urls["dlq"],
            "SQS_PROGRESS_QUEUE_URL": urls["progress"],
            "TRANSFLOW_UPLOAD_BUCKET": "uploads",
            "TRANSFLOW_OUTPUT_BUCKET": "uploads",
            "TRANSFLOW_BRANCH": "main",
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_DEFAULT_REGION": aws.region,
            # The embedded endpoint accepts any key; never the caller's real ones.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        _clients.cache_clear()
        later = time.time() + 5400
        try:
            return [handler({}, None, clock=lambda: later) for _ in range(2)]
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _clients.cache_clear()


if __name__ == "__main__":
    main()
