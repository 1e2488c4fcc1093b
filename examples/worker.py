"""A worker for the processing queue outside Lambda (ECS, EC2, a laptop).

Copy this file, put your templates in ``registry``, and run it with the ``transflow``
command from the folder that holds ``examples/`` (the module is found from the current
directory, as with ``python -m``; SIGTERM drains gracefully):

    transflow worker --templates examples.worker:registry --upload-bucket my-uploads \
        --output-bucket my-outputs

or build the worker yourself, as :func:`build_worker` does.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import boto3

from transflow import (
    JobProcessor,
    ProgressDestination,
    ProgressQueue,
    QueuePoller,
    StepContext,
    TemplateRegistry,
    make_worker,
    poller_client_config,
    run_worker,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

registry = TemplateRegistry()
checksums = registry.template("checksums")


@checksums.step("sha256")
def sha256(ctx: StepContext) -> None:
    """Write a JSON manifest with the SHA-256 and size of every input."""
    manifest = {}
    for done, item in enumerate(ctx.inputs, start=1):
        digest = hashlib.sha256()
        with item.path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        manifest[item.name] = {"sha256": digest.hexdigest(), "bytes": item.size}
        ctx.progress(100 * done / len(ctx.inputs), item.name)
    path = ctx.path("checksums.json")
    path.write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
    ctx.upload_result(path, "checksums.json", "application/json")


def build_worker(
    sqs: SQSClient,
    s3: S3Client,
    *,
    processing_queue_url: str,
    progress: ProgressDestination,
    upload_bucket: str,
    output_bucket: str,
    concurrency: int = 4,
    wait_time_seconds: int = 20,
) -> QueuePoller:
    """The processor behind a poller. ``sqs`` needs ``poller_client_config(concurrency)``."""
    processor = JobProcessor(
        registry,
        s3_client=s3,
        sqs_client=sqs,
        progress=progress,
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        max_receive_count=3,
    )
    return make_worker(
        processor,
        sqs,
        processing_queue_url,
        concurrency=concurrency,
        wait_time_seconds=wait_time_seconds,
    )


if __name__ == "__main__":
    import os

    run_worker(
        build_worker(
            boto3.client("sqs", config=poller_client_config(4)),
            boto3.client("s3"),
            processing_queue_url=os.environ["SQS_QUEUE_URL"],
            progress=ProgressQueue(os.environ["SQS_PROGRESS_QUEUE_URL"]),
            upload_bucket=os.environ["TRANSFLOW_UPLOAD_BUCKET"],
            output_bucket=os.environ["TRANSFLOW_OUTPUT_BUCKET"],
        )
    )
