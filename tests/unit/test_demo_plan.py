"""The demo's plan: which uploads it makes and which of them fail, decided without an endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from transflow.cli.demo.run import plan_uploads
from transflow.cli.demo.templates import AUDIO_TEMPLATE, DOCUMENT_TEMPLATE, FailurePlan


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
