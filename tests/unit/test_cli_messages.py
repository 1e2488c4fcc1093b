"""What the ``transflow`` command says when something is wrong: one line, the first thing to
fix, nothing about what the user did not pass. No endpoint needed."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from transflow.cli.app import main
from transflow.cli.regions import check_region


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


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--region", "mars-west-9", "--endpoint-url", "http://127.0.0.1:9"],
        ["dlq", "peek", "--region", "mars-west-9"],
        ["init", "--project", "other", "--force", "--region", "mars-west-9"],
        ["local", "--port", "0", "--region", "mars-west-9"],
    ],
)
def test_a_region_no_partition_has_is_one_line_before_any_call(
    project: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: "GetQueueUrl failed: 500: <!doctype html>…" from moto, or a DNS failure on AWS.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "'mars-west-9' is not an AWS region" in err
    assert "html" not in err.lower()


def test_every_region_botocore_lists_passes_and_new_ones_of_a_partition_too() -> None:
    session = boto3.session.Session()
    regions = {
        region
        for partition in session.get_available_partitions()
        for service in ("sqs", "s3")
        for region in session.get_available_regions(service, partition)
    }
    assert "us-east-1" in regions
    for region in [*sorted(regions), "eu-north-9", "us-gov-east-7", "cn-south-3"]:
        assert check_region(region) == region
