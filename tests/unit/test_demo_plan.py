"""The demo's plan: which uploads it makes and which of them fail, decided without an endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from transflow.cli.demo.run import _line, plan_uploads
from transflow.cli.demo.templates import AUDIO_TEMPLATE, DOCUMENT_TEMPLATE, FailurePlan
from transflow.streaming.snapshot import UploadState, UploadStatus


def test_plan_has_one_multi_file_upload_and_real_files(tmp_path: Path) -> None:
    plans = plan_uploads(tmp_path, 6)
    assert [len(p.files) for p in plans] == [3, 1, 1, 1]
    assert plans[0].template_id == AUDIO_TEMPLATE
    assert {p.template_id for p in plans} == {AUDIO_TEMPLATE, DOCUMENT_TEMPLATE}
    assert all(f.stat().st_size > 1000 for p in plans for f in p.files)


@pytest.mark.parametrize(
    ("rate", "uploads", "failing"),
    [(0.5, 4, 2), (0.5, 3, 1), (0.25, 8, 2), (0.29, 100, 29), (0.0, 10, 0), (1.0, 5, 5)],
)
def test_fail_rate_is_an_exact_share(rate: float, uploads: int, failing: int) -> None:
    plan = FailurePlan(rate)
    ids = [f"upload-{i}" for i in range(uploads)]
    chosen = [i for i in ids if plan.choose(i)]
    assert len(chosen) == failing
    assert [i for i in ids if plan.fails(i)] == chosen  # a redelivery fails again


def test_a_failure_reason_is_shown_whole_unless_a_terminal_is_narrower() -> None:
    reason = "chosen to fail by --fail-rate 0.5 (on every attempt); " + "x" * 80
    status = UploadStatus("upload:main:u1", state=UploadState.ERROR, error=reason)
    # Before, the reason was cut at 60 characters wherever it was shown.
    assert _line("document-archive x1 u1", status).endswith(f"error: {reason}")
    cut = _line("document-archive x1 u1", status, width=100)
    assert len(cut) == 100
    assert cut.endswith("…")
