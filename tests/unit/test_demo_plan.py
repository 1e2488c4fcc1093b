"""The demo's plan: which uploads it makes and which of them fail, decided without an endpoint."""

from __future__ import annotations

from pathlib import Path

from transflow.cli.demo.run import plan_uploads
from transflow.cli.demo.templates import AUDIO_TEMPLATE, DOCUMENT_TEMPLATE, fails


def test_plan_has_one_multi_file_upload_and_real_files(tmp_path: Path) -> None:
    plans = plan_uploads(tmp_path, 6)
    assert [len(p.files) for p in plans] == [3, 1, 1, 1]
    assert plans[0].template_id == AUDIO_TEMPLATE
    assert {p.template_id for p in plans} == {AUDIO_TEMPLATE, DOCUMENT_TEMPLATE}
    assert all(f.stat().st_size > 1000 for p in plans for f in p.files)


def test_fail_rate_is_a_stable_share() -> None:
    ids = [f"upload-{i}" for i in range(2000)]
    chosen = [i for i in ids if fails(i, 0.25)]
    assert 0.2 < len(chosen) / len(ids) < 0.3
    assert chosen == [i for i in ids if fails(i, 0.25)]
    assert not any(fails(i, 0.0) for i in ids)
    assert all(fails(i, 1.0) for i in ids)
