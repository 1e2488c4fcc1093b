"""A processing Lambda: copy this file into your project and register your own templates.

Deploy it with an SQS event source mapping on the processing queue (FIFO), with
``FunctionResponseTypes=["ReportBatchItemFailures"]`` so a failed job returns alone, and set:

- ``SQS_PROGRESS_QUEUE_URL``: the progress queue (FIFO);
- ``TRANSFLOW_UPLOAD_BUCKET``: the bridge's upload bucket, the only one inputs are read
  from (and, by default, where the bridge stores claim checks);
- ``TRANSFLOW_OUTPUT_BUCKET``: where outputs and status records go;
- ``TRANSFLOW_MAX_RECEIVE_COUNT``: the processing queue's redrive ``maxReceiveCount`` (3).

Give the queue a visibility timeout of at least six times the function timeout (AWS's advice
for Lambda event sources), so a job still running is never handed to a second invocation.

Run the demo against the embedded endpoint (needs the ``local`` extra):

    python -m examples.lambda_processor
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import struct
from typing import TYPE_CHECKING, Any

from transflow import (
    JobProcessor,
    ProgressDestination,
    ProgressEvent,
    ProgressQueue,
    StepContext,
    TemplateRegistry,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow import LambdaContext
    from transflow.processing.processor import BatchResponse

registry = TemplateRegistry()
wav_summary = registry.template("wav-summary", description="Measure and archive WAV uploads")


@wav_summary.step("measure")
def measure(ctx: StepContext) -> None:
    """Duration and peak level of every WAV input, as one JSON report."""
    import wave  # noqa: PLC0415 - loaded by the first job that runs this step, not the cold start

    report = []
    for index, item in enumerate(ctx.inputs):
        with wave.open(str(item.path), "rb") as audio:
            frames, rate, width = audio.getnframes(), audio.getframerate(), audio.getsampwidth()
            data = audio.readframes(frames)
        samples = struct.unpack(f"<{len(data) // 2}h", data) if width == 2 else ()
        report.append(
            {
                "file": item.name,
                "seconds": round(frames / rate, 3),
                "peak_dbfs": round(20 * math.log10(max(map(abs, samples), default=1) / 32768), 1),
            }
        )
        ctx.progress(100 * (index + 1) / len(ctx.inputs), f"measured {item.name}")
    path = ctx.path("report.json")
    path.write_text(json.dumps(report, indent=2))
    ctx.upload_result(path, "report.json")


@wav_summary.step("archive")
def archive(ctx: StepContext) -> None:
    """A gzip copy of every input."""
    for item in ctx.inputs:
        packed = ctx.path(item.path.name + ".gz")
        with item.path.open("rb") as source, gzip.open(packed, "wb") as target:
            shutil.copyfileobj(source, target)
        ctx.upload_result(packed, f"archive/{packed.name}", "application/gzip")


def build_processor(
    s3: S3Client,
    sqs: SQSClient,
    progress: ProgressDestination,
    upload_bucket: str,
    output_bucket: str,
) -> JobProcessor:
    """The processor, from its clients and settings."""
    return JobProcessor(
        registry,
        s3_client=s3,
        sqs_client=sqs,
        progress=progress,
        # Inputs are read from the job's own folder of this bucket only; claim checks from
        # it too (the bridge's default claim bucket) or the output bucket.
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        max_receive_count=int(os.environ.get("TRANSFLOW_MAX_RECEIVE_COUNT", "3")),
        time_margin=30,  # seconds: no job starts with less Lambda time than this left
    )


_processor: JobProcessor | None = None


def handler(event: dict[str, Any], context: LambdaContext) -> BatchResponse:
    """The Lambda entry point."""
    global _processor  # noqa: PLW0603 - built once per container, reused while it is warm
    if _processor is None:
        import boto3  # noqa: PLC0415

        _processor = build_processor(
            boto3.client("s3"),
            boto3.client("sqs"),
            ProgressQueue(os.environ["SQS_PROGRESS_QUEUE_URL"]),
            os.environ["TRANSFLOW_UPLOAD_BUCKET"],
            os.environ["TRANSFLOW_OUTPUT_BUCKET"],
        )
    return _processor.handle(event, context)


def main() -> dict[str, Any]:
    """Queue a job on a local FIFO queue, deliver it as Lambda would, and show the result."""
    # The demo's imports stay here, out of the handler's cold start.
    from transflow import ProcessingJob, S3ObjectRef, UserContext  # noqa: PLC0415
    from transflow.cli.demo.samples import tone_wav  # noqa: PLC0415
    from transflow.cli.local import LocalAws  # noqa: PLC0415 - the demo's embedded endpoint

    with LocalAws() as aws:
        s3, sqs = aws.s3(), aws.sqs()
        for bucket in ("uploads", "outputs"):
            s3.create_bucket(Bucket=bucket)
        jobs_url, progress_url = (
            sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
            for name in ("demo-processing.fifo", "demo-progress.fifo")
        )
        key = "uploads/main/users/user123/upload-abc/tone.wav"
        s3.put_object(
            Bucket="uploads",
            Key=key,
            Body=tone_wav(seconds=0.5, frequency=440, rate=8000, level=0.49, channels=1),
        )
        job = ProcessingJob(
            upload_id="upload-abc",
            template_id="wav-summary",
            objects=[S3ObjectRef("uploads", key)],
            branch="main",
            user=UserContext("user123"),
        )
        sqs.send_message(
            QueueUrl=jobs_url,
            MessageBody=job.to_json(),
            MessageGroupId=job.upload_id,
            MessageDeduplicationId="upload-abc-demo",
        )
        message = sqs.receive_message(
            QueueUrl=jobs_url, MessageSystemAttributeNames=["All"], WaitTimeSeconds=1
        )["Messages"][0]
        event = {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message["Attributes"],
                    "eventSource": "aws:sqs",
                }
            ]
        }
        response = build_processor(
            s3, sqs, ProgressQueue(progress_url), "uploads", "outputs"
        ).handle(event)
        status_key = "outputs/main/users/user123/upload-abc/status.json"
        status = json.loads(s3.get_object(Bucket="outputs", Key=status_key)["Body"].read())
        report_key = "outputs/main/users/user123/upload-abc/report.json"
        report = json.loads(s3.get_object(Bucket="outputs", Key=report_key)["Body"].read())
        events = sqs.receive_message(QueueUrl=progress_url, MaxNumberOfMessages=10)["Messages"]
    print(f"batchItemFailures: {response['batchItemFailures']}")
    print(f"status: {status['ok']} in {status['execution_duration']} s")
    print(f"report: {report}")
    # A progress message carries one event, or (packed) several of one upload.
    types = [e.type.value for m in events for e in ProgressEvent.all_from_json(m["Body"])]
    print(f"progress events: {types}")
    return {"response": response, "status": status, "report": report}


if __name__ == "__main__":
    main()
