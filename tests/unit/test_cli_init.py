"""``transflow init``: writes a checked configuration file, touching no AWS endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transflow.cli.app import main


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
