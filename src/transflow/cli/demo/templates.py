"""The demo's templates: real work on real files with the standard library.

- ``audio-normalise``: each WAV is measured, down-mixed to mono and peak-normalised.
- ``document-archive``: each document is checksummed and gzip-compressed, and a manifest of
  the checksums is written.

``fail_rate`` makes a deterministic share of uploads fail in their first step, to show
retries and the dead-letter queue; which ones is decided by a hash of the upload id, so a
redelivered job fails again, as a real poison message would.
"""

from __future__ import annotations

import hashlib
import json

from transflow.cli.demo.media import compress_document, normalise_wav
from transflow.errors import TransflowError
from transflow.processing.context import StepContext
from transflow.processing.templates import TemplateRegistry

__all__ = ["AUDIO_TEMPLATE", "DOCUMENT_TEMPLATE", "SimulatedFailure", "demo_registry", "fails"]

AUDIO_TEMPLATE = "audio-normalise"
"""The demo template that down-mixes and normalises WAV files."""
DOCUMENT_TEMPLATE = "document-archive"
"""The demo template that checksums and compresses documents."""


class SimulatedFailure(TransflowError):
    """The demo's ``--fail-rate`` chose this upload to fail."""


def fails(upload_id: str, fail_rate: float) -> bool:
    """Whether the demo fails this upload: a stable share ``fail_rate`` of upload ids."""
    if fail_rate <= 0:
        return False
    digest = hashlib.sha256(upload_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fail_rate


def demo_registry(*, output_bucket: str, fail_rate: float = 0.0) -> TemplateRegistry:
    """A registry with the two demo templates, writing to ``output_bucket``."""
    registry = TemplateRegistry()
    audio = registry.template(AUDIO_TEMPLATE, output_bucket=output_bucket)
    documents = registry.template(DOCUMENT_TEMPLATE, output_bucket=output_bucket)

    def check_failure(ctx: StepContext) -> None:
        if fails(ctx.upload_id, fail_rate):
            raise SimulatedFailure(
                f"upload {ctx.upload_id} was chosen to fail by --fail-rate {fail_rate}"
            )

    @audio.step("normalise")
    def normalise(ctx: StepContext) -> None:
        check_failure(ctx)
        total = len(ctx.inputs)
        for done, item in enumerate(ctx.inputs, start=1):
            target = ctx.path(f"{item.path.stem}.normalised.wav")
            stats = normalise_wav(item.path, target)
            ctx.upload_result(target, f"normalised/{item.path.stem}.wav", "audio/wav")
            ctx.progress(
                100 * done / total,
                f"{item.name}: {stats.duration_sec:.1f}s, {stats.channels_in}ch → mono, "
                f"gain {stats.gain:.2f}",
            )

    @documents.step("compress")
    def compress(ctx: StepContext) -> None:
        check_failure(ctx)
        manifest: dict[str, dict[str, object]] = {}
        total = len(ctx.inputs)
        for done, item in enumerate(ctx.inputs, start=1):
            target = ctx.path(f"{item.path.name}.gz")
            stats = compress_document(item.path, target)
            ctx.upload_result(target, f"compressed/{item.path.name}.gz", "application/gzip")
            manifest[item.name] = {
                "sha256": stats.sha256,
                "bytes": stats.bytes_in,
                "compressedBytes": stats.bytes_out,
            }
            ctx.progress(100 * done / total, f"{item.name}: {stats.bytes_in} → {stats.bytes_out}")
        ctx.publish("progress", percent=100, manifestEntries=len(manifest))
        path = ctx.path("manifest.json")
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        ctx.upload_result(path, "manifest.json", "application/json")

    return registry
