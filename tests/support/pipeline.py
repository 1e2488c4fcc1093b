"""Shared pieces of the processing tests: real media files made with the standard library,
queues and buckets on the moto server, and reading the progress queue back."""

from __future__ import annotations

import io
import json
import math
import struct
import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from transflow import (
    ProcessingJob,
    ProgressEvent,
    S3ObjectRef,
    StepContext,
    Template,
    TemplateRegistry,
    UserContext,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

UPLOADS = "uploads-bucket"
OUTPUTS = "outputs-bucket"


def wav_bytes(seconds: float = 0.25, freq: float = 440.0, rate: int = 8000) -> bytes:
    """A mono 16-bit sine wave."""
    frames = int(seconds * rate)
    samples = (int(12_000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


@attrs.frozen
class Queues:
    processing: str
    progress: str
    dlq: str


def make_queues(sqs: SQSClient, *, max_receive_count: int = 3) -> Queues:
    dlq = sqs.create_queue(QueueName="app-main-dlq.fifo", Attributes={"FifoQueue": "true"})
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    processing = sqs.create_queue(
        QueueName="app-main-processing.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )
    progress = sqs.create_queue(
        QueueName="app-main-progress.fifo", Attributes={"FifoQueue": "true"}
    )
    return Queues(processing["QueueUrl"], progress["QueueUrl"], dlq["QueueUrl"])


def make_buckets(s3: S3Client) -> None:
    s3.create_bucket(Bucket=UPLOADS)
    s3.create_bucket(Bucket=OUTPUTS)


def put_upload(
    s3: S3Client, upload_id: str, names_and_bodies: list[tuple[str, bytes]], user: str | None
) -> ProcessingJob:
    """Put files where the bridge would find them and return the job it would queue."""
    user_part = f"users/{user}/" if user else ""
    refs = []
    for name, body in names_and_bodies:
        key = f"uploads/main/{user_part}{upload_id}/{name}"
        s3.put_object(Bucket=UPLOADS, Key=key, Body=body)
        refs.append(S3ObjectRef(UPLOADS, key))
    return ProcessingJob(
        upload_id=upload_id,
        template_id="audio-demo",
        objects=refs,
        branch="main",
        fields={"slug": "intro"},
        user=UserContext(user) if user else None,
    )


def drain_events(sqs: SQSClient, url: str) -> list[ProgressEvent]:
    """Every event on the progress queue, in queue order (deleted as read)."""
    events: list[ProgressEvent] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return events
        for message in messages:
            for event in ProgressEvent.all_from_json(message["Body"]):
                assert message["Attributes"]["MessageGroupId"] == event.upload_id
                events.append(event)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def await_events(
    sqs: SQSClient, url: str, count: int, deadline: float = 15.0
) -> list[ProgressEvent]:
    """The events on ``url`` once ``count`` have arrived (SNS delivers to a subscribed queue
    asynchronously: on LocalStack, after the publish returns), plus any that came with them;
    fails after ``deadline`` seconds with what did arrive."""
    events: list[ProgressEvent] = []
    end = time.monotonic() + deadline
    while len(events) < count and time.monotonic() < end:
        events.extend(drain_events(sqs, url))
        if len(events) < count:
            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0)
    events.extend(drain_events(sqs, url))
    assert len(events) >= count, f"{len(events)} of {count} events arrived in {deadline}s"
    return events


def lambda_record(job_body: str, message_id: str, group: str, count: int = 1) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": job_body,
        "attributes": {"ApproximateReceiveCount": str(count), "MessageGroupId": group},
        "eventSource": "aws:sqs",
    }


def get_json(s3: S3Client, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def list_keys(s3: S3Client, bucket: str, prefix: str = "") -> list[str]:
    response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


# -- a template that does real work on real files -----------------------------------------


def analyze_wav(path: Path) -> dict[str, Any]:
    """Duration and peak level of a 16-bit WAV file."""
    with wave.open(str(path), "rb") as audio:
        frames = audio.getnframes()
        rate = audio.getframerate()
        data = audio.readframes(frames)
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    return {
        "frames": frames,
        "rate": rate,
        "duration": frames / rate,
        "peak": max((abs(s) for s in samples), default=0),
    }


def register_audio_demo(
    registry: TemplateRegistry,
    calls: dict[str, int],
    *,
    template_id: str = "audio-demo",
    **options: Any,
) -> Template:
    """Two steps: analyze each WAV (JSON report), then gzip each and write a manifest."""
    import gzip
    import hashlib
    import shutil

    template = registry.template(template_id, **options)

    @template.step("analyze")
    def analyze(ctx: StepContext) -> None:
        calls["analyze"] = calls.get("analyze", 0) + 1
        for index, item in enumerate(ctx.inputs):
            report = ctx.path(f"{item.path.stem}.json")
            report.write_text(json.dumps({"source": item.key, **analyze_wav(item.path)}))
            ctx.upload_result(report, f"analysis/{item.path.stem}.json")
            ctx.progress(100 * (index + 1) / len(ctx.inputs), f"analyzed {item.name}")

    @template.step("compress")
    def compress(ctx: StepContext) -> None:
        calls["compress"] = calls.get("compress", 0) + 1
        manifest = {}
        for item in ctx.inputs:
            packed = ctx.path(f"{item.path.name}.gz")
            with item.path.open("rb") as src, gzip.open(packed, "wb") as dst:
                shutil.copyfileobj(src, dst)
            ctx.upload_result(packed, f"compressed/{packed.name}", "application/gzip")
            manifest[item.key] = hashlib.sha256(item.path.read_bytes()).hexdigest()
        listing = ctx.path("manifest.json")
        listing.write_text(json.dumps(manifest, sort_keys=True))
        ctx.upload_result(listing, "manifest.json")

    return template
