"""What the ``transflow`` command says when something is wrong: one line, the first thing to
fix, nothing about what the user did not pass. No endpoint needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from transflow.cli.app import main


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--project", "myapp"]) == 0
    return tmp_path


def test_sam_does_not_overwrite_without_force(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = project / "template.yaml"
    assert main(["sam", "--upload-bucket", "myapp-uploads", "-o", str(target)]) == 0
    first = target.read_text()
    target.write_text("mine")
    assert main(["sam", "--upload-bucket", "myapp-uploads", "-o", str(target)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert target.read_text() == "mine"
    assert main(["sam", "--upload-bucket", "myapp-uploads", "-o", str(target), "--force"]) == 0
    assert target.read_text() == first


def test_a_bad_bucket_is_named_once(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sam", "--upload-bucket", "b"]) == 2
    err = capsys.readouterr().err
    assert "upload bucket 'b'" in err
    assert "output bucket" not in err


def test_without_a_configuration_that_is_said_before_the_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "no transflow.config.json" in err
    assert "region" not in err


def test_a_config_error_names_the_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "transflow.config.json").write_text('{"project": "myapp"}')
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("transflow.config.json") == 1
    assert "'sqs' section is required" in err


def test_a_bad_fail_rate_says_what_is_wanted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--fail-rate", "abc"])
    err = capsys.readouterr().err
    assert "not a share between 0 and 1" in err
    assert "_rate" not in err
