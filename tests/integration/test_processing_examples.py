"""The processing examples run as documented."""

from __future__ import annotations

import shutil

import pytest

from examples import lambda_processor, templates_audio
from transflow.cli.local import LocalAws

# moto keeps its state per process, shared by every LocalAws in it: the aws fixture starts each
# example from an empty endpoint.
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def test_lambda_processor_example_runs_a_job(aws: LocalAws) -> None:
    result = lambda_processor.main()
    assert result["response"] == {"batchItemFailures": []}
    assert result["status"]["ok"] == "ASSEMBLY_COMPLETED"
    assert result["report"] == [{"file": "tone.wav", "seconds": 0.5, "peak_dbfs": -6.2}]
    assert [r["name"] for r in result["status"]["results"]["archive"]] == ["archive/tone.wav.gz"]


@pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg and ffprobe are not installed")
def test_audio_template_example_transcodes_with_ffmpeg(aws: LocalAws) -> None:
    result = templates_audio.main()
    status = result["status"]
    assert status.completed
    assert sorted(status.results) == ["preview", "probe", "transcode"]
    prefix = "outputs/main/users/user123/upload-abc/"
    assert set(result["sizes"]) == {
        prefix + name
        for name in ("audio/song.m4a", "preview.m4a", "probe/song.json", "status.json")
    }
    assert result["sizes"][prefix + "audio/song.m4a"] > 1000
    # The preview really is audio, cut from 1 s into a 3 s tone: about 2 s long.
    assert 1.8 < result["preview_seconds"] < 2.3
