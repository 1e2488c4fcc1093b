"""Sample input files for the demo: stereo WAV tones and text documents, made on the spot."""

from __future__ import annotations

import array
import io
import math
import random
import sys
import wave
from pathlib import Path

__all__ = ["tone_wav", "write_document", "write_tone"]

_WORDS = (
    "queue",
    "message",
    "upload",
    "branch",
    "progress",
    "template",
    "bucket",
    "object",
    "event",
    "stream",
    "worker",
    "lambda",
    "visibility",
    "dead",
    "letter",
    "batch",
    "group",
    "ordered",
    "duplicate",
    "retry",
    "jitter",
    "heartbeat",
)


def tone_wav(
    *,
    seconds: float = 1.0,
    rate: int = 22_050,
    frequency: float = 440.0,
    level: float = 0.3,
    channels: int = 2,
) -> bytes:
    """A 16-bit WAV, as bytes: a sine, and on a second channel a quieter fifth above it."""
    frames = int(seconds * rate)
    samples = array.array("h")
    for n in range(frames):
        t = n / rate
        samples.append(int(level * 32767 * math.sin(2 * math.pi * frequency * t)))
        if channels == 2:
            samples.append(int(level * 0.5 * 32767 * math.sin(2 * math.pi * frequency * 1.5 * t)))
    if sys.byteorder == "big":
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


def write_tone(
    path: Path,
    *,
    seconds: float = 1.0,
    rate: int = 22_050,
    frequency: float = 440.0,
    level: float = 0.3,
) -> Path:
    """A 16-bit stereo WAV file: a sine on the left, a quieter fifth above it on the right."""
    path.write_bytes(tone_wav(seconds=seconds, rate=rate, frequency=frequency, level=level))
    return path


def write_document(path: Path, *, words: int = 5_000, seed: int = 0) -> Path:
    """A text document of pseudo-random words (compressible, like real prose)."""
    rng = random.Random(seed)  # noqa: S311 - sample text, not security
    lines = []
    for start in range(0, words, 12):
        lines.append(" ".join(rng.choice(_WORDS) for _ in range(min(12, words - start))))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
