"""Real work on real files, with the standard library only: what the demo templates do.

WAV files are down-mixed to mono and peak-normalised (``wave`` + ``array``, streamed in
blocks, two passes, so memory stays flat whatever the file's length); documents are
checksummed and gzip-compressed. Pure: files in, files out, no AWS.
"""

from __future__ import annotations

import array
import gzip
import hashlib
import shutil
import sys
import wave
from pathlib import Path

import attrs

from transflow.errors import TransflowError

__all__ = [
    "AudioStats",
    "DocumentStats",
    "MediaError",
    "compress_document",
    "normalise_wav",
]

_BLOCK_FRAMES = 65_536
_TYPECODES = {1: "B", 2: "h", 4: "i"}  # WAV: 8-bit is unsigned, wider samples signed


class MediaError(TransflowError):
    """A demo input cannot be processed (for example a WAV encoding we do not read)."""


@attrs.frozen
class AudioStats:
    """What normalising did."""

    channels_in: int
    sample_rate: int
    frames: int
    peak_in: float
    gain: float

    @property
    def duration_sec(self) -> float:
        """The length of the audio in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@attrs.frozen
class DocumentStats:
    """What compressing did."""

    sha256: str
    bytes_in: int
    bytes_out: int


def _read_block(reader: wave.Wave_read, width: int) -> array.array[int]:
    raw = reader.readframes(_BLOCK_FRAMES)
    samples = array.array(_TYPECODES[width])
    samples.frombytes(raw)
    if sys.byteorder == "big" and width > 1:
        samples.byteswap()
    return samples


def _limits(width: int) -> tuple[int, int, int]:
    """(zero level, lowest, highest) sample value of a sample width."""
    if width == 1:
        return 128, 0, 255
    full = 1 << (8 * width - 1)
    return 0, -full, full - 1


def _mix(block: array.array[int], channels: int, zero: int) -> list[float]:
    """Frames of interleaved samples → one centred value per frame (the channels' mean)."""
    return [
        sum(block[start : start + channels]) / channels - zero
        for start in range(0, len(block), channels)
    ]


def normalise_wav(source: Path, target: Path, *, peak: float = 0.89) -> AudioStats:
    """Down-mix ``source`` to mono and scale it so its loudest sample reaches ``peak`` of
    full scale; write the result to ``target`` with the same rate and sample width."""
    if not 0 < peak <= 1:
        raise MediaError(f"peak must be in (0, 1], not {peak}")
    try:
        reader = wave.open(str(source), "rb")  # noqa: SIM115 - closed by the with below
    except (wave.Error, EOFError) as exc:
        raise MediaError(f"{source.name} is not a PCM WAV file ({exc})") from exc
    with reader:
        channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        if width not in _TYPECODES:
            raise MediaError(
                f"{source.name}: {8 * width}-bit samples are not supported; use 8, 16 or 32-bit"
            )
        zero, low, high = _limits(width)
        # First pass: the peak of the mixed signal, which is what will be scaled.
        loudest = 0.0
        frames = 0
        while block := _read_block(reader, width):
            mixed = _mix(block, channels, zero)
            frames += len(mixed)
            loudest = max(loudest, *(abs(v) for v in mixed), 0.0)
        gain = (peak * (high - zero)) / loudest if loudest else 1.0
        reader.rewind()
        with wave.open(str(target), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(width)
            writer.setframerate(rate)
            while block := _read_block(reader, width):
                mono = array.array(
                    _TYPECODES[width],
                    (
                        min(high, max(low, round(v * gain) + zero))
                        for v in _mix(block, channels, zero)
                    ),
                )
                if sys.byteorder == "big" and width > 1:
                    mono.byteswap()
                writer.writeframes(mono.tobytes())
    peak_in = loudest / (high - zero)
    return AudioStats(channels, rate, frames, peak_in, gain)


def compress_document(source: Path, target: Path) -> DocumentStats:
    """Gzip ``source`` into ``target`` and return the SHA-256 of the original."""
    digest = hashlib.sha256()
    with source.open("rb") as src, gzip.open(target, "wb", compresslevel=9) as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    return DocumentStats(digest.hexdigest(), source.stat().st_size, target.stat().st_size)


def copy_file(source: Path, target: Path) -> None:
    """Copy without reading the whole file into memory."""
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
