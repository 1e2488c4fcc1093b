"""examples/recover_failed_jobs.py runs and does what it says."""

from __future__ import annotations

import pytest

from examples import recover_failed_jobs


def test_recover_failed_jobs_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert recover_failed_jobs.main() == (False, True)
    out = capsys.readouterr().out
    assert "unhealthy [dlq-not-empty]" in out
    # maxReceiveCount is 2: the peek shows the count from before its own receive.
    assert "failed: upload-abc after 2 receives: STEP_FAILED: truncated" in out
    assert "redrive: 1 job(s) back" in out
