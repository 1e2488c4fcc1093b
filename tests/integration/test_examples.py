"""Every example runs."""

from __future__ import annotations

import pytest

from examples import queue_a_job


def test_queue_a_job(capsys: pytest.CaptureFixture[str]) -> None:
    job = queue_a_job.main()
    assert job.upload_id == "upload-abc"
    out = capsys.readouterr().out
    assert "myapp-feature-login-page-processing.fifo" in out
    assert "SQS requests: 2" in out
