"""The demo's media work is real: measured on real files."""

from __future__ import annotations

import array
import gzip
import hashlib
import wave
from pathlib import Path

import pytest

from transflow.cli.demo.media import MediaError, compress_document, normalise_wav
from transflow.cli.demo.samples import write_document, write_tone


def read_samples(path: Path) -> tuple[int, array.array[int]]:
    with wave.open(str(path), "rb") as reader:
        samples = array.array("h")
        samples.frombytes(reader.readframes(reader.getnframes()))
        return reader.getnchannels(), samples


def test_a_stereo_tone_is_down_mixed_and_normalised(tmp_path: Path) -> None:
    source = write_tone(tmp_path / "in.wav", seconds=0.5, level=0.25)
    stats = normalise_wav(source, tmp_path / "out.wav", peak=0.9)
    channels, samples = read_samples(tmp_path / "out.wav")
    assert stats.channels_in == 2
    assert channels == 1
    assert len(samples) == stats.frames == int(0.5 * 22_050)
    loudest = max(abs(s) for s in samples)
    assert 0.88 * 32767 <= loudest <= 0.9 * 32767 + 1
    assert stats.gain > 1


def test_silence_stays_silent(tmp_path: Path) -> None:
    source = write_tone(tmp_path / "in.wav", seconds=0.1, level=0.0)
    stats = normalise_wav(source, tmp_path / "out.wav")
    assert stats.gain == 1.0
    assert max(abs(s) for s in read_samples(tmp_path / "out.wav")[1]) == 0


def test_what_is_not_a_wav_is_a_media_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.wav"
    bogus.write_bytes(b"not a wave file at all")
    with pytest.raises(MediaError, match=r"x\.wav is not a PCM WAV file"):
        normalise_wav(bogus, tmp_path / "out.wav")


def test_a_document_is_checksummed_and_compressed(tmp_path: Path) -> None:
    source = write_document(tmp_path / "doc.txt", words=20_000)
    stats = compress_document(source, tmp_path / "doc.txt.gz")
    assert stats.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert stats.bytes_out < stats.bytes_in / 3
    assert gzip.decompress((tmp_path / "doc.txt.gz").read_bytes()) == source.read_bytes()
