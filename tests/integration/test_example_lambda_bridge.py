"""examples/lambda_bridge.py runs as documented: presigned POSTs in, one job out."""

from __future__ import annotations

import pytest

from examples import lambda_bridge


def test_example_uploads_two_files_and_queues_one_job(capsys: pytest.CaptureFixture[str]) -> None:
    keys = lambda_bridge.main()
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["take 1.wav", "take 2.wav"]
    out = capsys.readouterr().out
    assert 'handler returned {"batchItemFailures": []}' in out
    assert out.count("queued ") == 1
