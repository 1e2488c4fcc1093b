"""An audio template built on ffmpeg and ffprobe: probe, transcode to AAC, cut a preview.

Register it on the registry of your processor (see examples/lambda_processor.py). In Lambda,
ffmpeg comes from a layer or a container image; ``ctx.run`` raises ToolNotFoundError with
that advice when it is missing.

Run the demo (needs ffmpeg on PATH and the ``local`` extra):

    python -m examples.templates_audio
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressQueue,
    S3ObjectRef,
    StepContext,
    TemplateRegistry,
    UserContext,
)
from transflow.cli.demo.samples import tone_wav
from transflow.processing.external import run_tool

PREVIEW_SECONDS = 10
# No prompts, overwrite, errors only: ctx.run keeps the tail of stderr for the error message.
FFMPEG = ("ffmpeg", "-nostdin", "-y", "-v", "error")


def register_audio_template(registry: TemplateRegistry, **options: Any) -> None:
    """Add the ``audio-processing`` template to ``registry``."""
    audio = registry.template("audio-processing", **options)

    @audio.step("probe")
    def probe(ctx: StepContext) -> None:
        """ffprobe each input: format, duration, streams, as JSON next to the outputs."""
        for item in ctx.inputs:
            result = ctx.run(
                [
                    "ffprobe",
                    "-v",
                    "error",
                    "-print_format",
                    "json",
                    "-show_format",
                    "-show_streams",
                    str(item.path),
                ],
                timeout=60,
            )
            info = json.loads(result.stdout)
            if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
                raise ValueError(f"{item.name} has no audio stream")
            path = ctx.path(f"{item.path.stem}.probe.json")
            path.write_text(json.dumps(info, indent=2))
            ctx.upload_result(path, f"probe/{item.path.stem}.json")

    @audio.step("transcode")
    def transcode(ctx: StepContext) -> None:
        """Every input as 128 kbit/s AAC in an M4A container."""
        for index, item in enumerate(ctx.inputs):
            target = ctx.path(f"{item.path.stem}.m4a")
            ctx.run(
                [*FFMPEG, "-i", str(item.path), "-vn", "-c:a", "aac", "-b:a", "128k", str(target)],
            )
            ctx.upload_result(target, f"audio/{target.name}", "audio/mp4")
            ctx.progress(100 * (index + 1) / len(ctx.inputs), f"transcoded {item.name}")

    @audio.step("preview")
    def preview(ctx: StepContext) -> None:
        """A short preview of the first input, from the client's ``previewStartTime`` field."""
        start = float(str(ctx.fields.get("previewStartTime", 0)) or 0)
        first = ctx.inputs[0]
        target = ctx.path("preview.m4a")
        ctx.run(
            [
                *FFMPEG,
                *("-ss", f"{start:g}", "-t", str(PREVIEW_SECONDS), "-i", str(first.path)),
                *("-vn", "-c:a", "aac", "-b:a", "96k", str(target)),
            ],
        )
        ctx.upload_result(target, "preview.m4a", "audio/mp4")


def main() -> dict[str, Any]:
    """Run one upload through the template on the embedded endpoint."""
    from transflow.cli.local import LocalAws  # noqa: PLC0415 - the demo's embedded endpoint

    registry = TemplateRegistry()
    register_audio_template(registry)
    with LocalAws() as aws:
        s3, sqs = aws.s3(), aws.sqs()
        s3.create_bucket(Bucket="uploads")
        s3.create_bucket(Bucket="outputs")
        progress_url = sqs.create_queue(
            QueueName="demo-progress.fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
        key = "uploads/main/users/user123/upload-abc/song.wav"
        s3.put_object(
            Bucket="uploads",
            Key=key,
            Body=tone_wav(seconds=3.0, frequency=330, rate=22050, level=0.37, channels=1),
        )
        job = ProcessingJob(
            upload_id="upload-abc",
            template_id="audio-processing",
            objects=[S3ObjectRef("uploads", key)],
            branch="main",
            fields={"previewStartTime": "1"},
            user=UserContext("user123"),
        )
        processor = JobProcessor(
            registry,
            s3_client=s3,
            upload_bucket="uploads",
            sqs_client=sqs,
            progress=ProgressQueue(progress_url),
            output_bucket="outputs",
        )
        status = processor.run_job(job)
        sizes = {
            item["Key"]: item["Size"] for item in s3.list_objects_v2(Bucket="outputs")["Contents"]
        }
        preview = s3.get_object(Bucket="outputs", Key=status.results["preview"][0].key)
        preview_seconds = _duration(preview["Body"].read())
    for name, size in sorted(sizes.items()):
        print(f"{size:>8}  s3://outputs/{name}")
    print(f"{status.ok}: {sum(len(r) for r in status.results.values())} results")
    print(f"preview: {preview_seconds:.2f} s")
    return {"status": status, "sizes": sizes, "preview_seconds": preview_seconds}


def _duration(media: bytes) -> float:
    """The duration ffprobe reads from a media file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "media"
        path.write_bytes(media)
        probe = run_tool(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", str(path)],
            timeout=60,
        )
    return float(json.loads(probe.stdout)["format"]["duration"])


if __name__ == "__main__":
    main()
