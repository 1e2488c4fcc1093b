"""``transflow init``: writes a checked configuration file, touching no AWS endpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from transflow.cli.app import main
from transflow.cli.local import LocalAws
from transflow.errors import TransflowError


def test_init_writes_a_valid_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "transflow.config.json"
    assert (
        main(
            [
                "init",
                "--config",
                str(path),
                "--project",
                "shop",
                "--branch",
                "feature/x",
                "--visibility-timeout",
                "300",
            ]
        )
        == 0
    )
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["project"] == "shop"
    assert written["sqs"]["visibilityTimeoutSec"] == 300
    assert "shop-feature-x--217d2bf5-processing.fifo" in capsys.readouterr().out

    assert main(["init", "--config", str(path), "--project", "shop"]) == 2
    assert "--force" in capsys.readouterr().err

    bad = tmp_path / "bad.json"
    assert main(["init", "--config", str(bad), "--project", "shop", "--batch-size", "11"]) == 2
    err = capsys.readouterr().err
    assert "sqs.batchSize: 11 is out of range" in err
    assert not bad.exists()


def test_init_ends_the_file_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    assert main(["init", "--config", str(path), "--project", "shop"]) == 0
    assert path.read_text(encoding="utf-8").endswith("}\n")


def test_a_bad_flag_names_the_file_the_user_named_not_a_scratch_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.json"
    assert main(["init", "--config", str(path), "--project", "shop", "--batch-size", "11"]) == 2
    err = capsys.readouterr().err
    assert f"({path})" in err, err
    assert "transflow.config.json" not in err  # the scratch copy's name
    assert "batchSize: 11 is out of range" in err
    assert not path.exists()


def test_a_missing_configuration_points_at_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQS_QUEUE_URL", raising=False)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "pass --config PATH" in err
    assert "pass a path to load_config" not in err


def test_the_missing_extra_hint_installs_from_a_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    # As without the extra: the import of moto's server fails.
    monkeypatch.setitem(sys.modules, "moto.server", None)
    with pytest.raises(TransflowError) as caught:
        LocalAws().start()
    assert "pip install -e '.[local]'" in str(caught.value)
    assert "pip install 'transflow[local]'" not in str(caught.value)  # not on PyPI
