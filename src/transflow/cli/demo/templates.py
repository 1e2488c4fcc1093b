"""The demo's templates: real work on real files with the standard library.

- ``audio-normalise``: each WAV is measured, down-mixed to mono and peak-normalised.
- ``document-archive``: each document is checksummed and gzip-compressed, and a manifest of
  the checksums is written.

A :class:`FailurePlan` makes a deterministic share of uploads fail in their first step, to
show retries and the dead-letter queue: of the first ``n`` uploads created, exactly
``floor(n * rate)`` are chosen (with rate 0.5: the 2nd, the 4th, ...). A chosen upload fails
on every delivery, as a real poison message would.
"""

from __future__ import annotations

import json
import math
import threading

import attrs

from transflow.cli.demo.media import compress_document, normalise_wav
from transflow.errors import TransflowError
from transflow.processing.context import StepContext
from transflow.processing.templates import TemplateRegistry

__all__ = [
    "AUDIO_TEMPLATE",
    "DOCUMENT_TEMPLATE",
    "FailurePlan",
    "SimulatedFailure",
    "demo_registry",
]

AUDIO_TEMPLATE = "audio-normalise"
"""The demo template that down-mixes and normalises WAV files."""
DOCUMENT_TEMPLATE = "document-archive"
"""The demo template that checksums and compresses documents."""


class SimulatedFailure(TransflowError):
    """The demo's ``--fail-rate`` chose this upload to fail."""


@attrs.define
class FailurePlan:
    """Which uploads the demo fails: :meth:`choose` is called once per upload as it is
    created, and picks exactly ``floor(n * rate)`` of the first ``n``."""

    rate: float = 0.0
    _created: int = 0
    _chosen: set[str] = attrs.field(factory=set)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def choose(self, upload_id: str) -> bool:
        """Count a new upload; whether it is to fail."""
        with self._lock:
            self._created += 1
            # The epsilon keeps 0.29 * 100 from flooring to 28.
            due = math.floor(self._created * self.rate + 1e-9)
            if due > len(self._chosen):
                self._chosen.add(upload_id)
                return True
            return False

    def fails(self, upload_id: str) -> bool:
        """Whether this upload was chosen to fail."""
        with self._lock:
            return upload_id in self._chosen


def demo_registry(*, output_bucket: str, failures: FailurePlan | None = None) -> TemplateRegistry:
    """A registry with the two demo templates, writing to ``output_bucket``; the uploads
    ``failures`` chose fail in their first step."""
    registry = TemplateRegistry()
    audio = registry.template(AUDIO_TEMPLATE, output_bucket=output_bucket)
    documents = registry.template(DOCUMENT_TEMPLATE, output_bucket=output_bucket)

    def check_failure(ctx: StepContext) -> None:
        if failures is not None and failures.fails(ctx.upload_id):
            raise SimulatedFailure(
                f"chosen to fail by --fail-rate {failures.rate} (on every attempt)"
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
