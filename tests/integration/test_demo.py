"""``transflow demo``: the whole pipeline on its own embedded endpoint, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transflow.cli.app import main
from transflow.cli.local import LocalAws

ROOT = Path(__file__).parents[2]


def test_half_the_uploads_fail_with_fail_rate_half(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--files", "4", "--fail-rate", "0.5", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (summary["uploads"], summary["completed"], summary["failed"]) == (2, 1, 1)
    assert summary["deadLettered"] == 1


def test_demo_json_completes_every_upload(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--files", "5", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["uploads"] == 3
    assert summary["completed"] == 3
    assert summary["deadLettered"] == 0
    assert summary["outputs"] == 3 + 2 + 1  # 3 normalised WAVs; gzip + manifest; 1 WAV
    requests = summary["requests"]
    assert requests["sqs"] > requests["sqsIdlePolls"] >= 0
    # Per upload without the idle polls, whose number follows wall time (no bound here: the
    # heartbeats follow wall time too; bench/cost.py measures the figure).
    assert requests["sqsPerUpload"] == round((requests["sqs"] - requests["sqsIdlePolls"]) / 3, 2)
    for upload in summary["details"]:
        assert upload["state"] == "completed"
        assert all(o["bytes"] > 0 for o in upload["outputs"])


def test_failed_uploads_are_retried_then_dead_lettered(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--files", "4", "--fail-rate", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # not every upload completed
    assert summary["completed"] == 0
    assert summary["failed"] == summary["uploads"] == 2
    assert summary["deadLettered"] == 2
    assert all("--fail-rate" in (u["error"] or "") for u in summary["details"])


def test_the_demo_command_draws_progress_and_a_summary() -> None:
    # A fresh process, as `make demo` runs it.
    result = subprocess.run(
        [sys.executable, "-m", "transflow", "demo", "--files", "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 of 1 uploads completed, 0 failed, 0 dead-lettered" in result.stdout
    assert "100.0%" in result.stdout
    assert "normalised/take-3.wav" in result.stdout
    assert "SQS requests:" in result.stdout
    assert "varies from run to run" in result.stdout  # why two runs differ
    # The page's address is good while the demo runs, and the end says it is gone.
    assert "while the demo runs" in result.stdout.splitlines()[0]
    assert result.stdout.rstrip().endswith("'transflow dev' keeps them running.")
    assert result.stderr == ""


def test_the_dev_command_serves_the_page_until_sigterm() -> None:
    import re
    import signal
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-m", "transflow", "dev", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # printed once everything runs
        found = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        assert found, line
        with urllib.request.urlopen(found.group(1) + "/", timeout=10) as page:
            html = page.read().decode()
        assert "<title>transflow dev</title>" in html
        assert 'src="app.js"' in html
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_the_demo_runs_on_the_endpoint_and_region_it_is_given(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_embedded_endpoint(self: LocalAws) -> LocalAws:
        raise AssertionError("--endpoint-url was given: no embedded endpoint may start")

    monkeypatch.setattr(LocalAws, "start", no_embedded_endpoint)
    endpoint = ["--endpoint-url", aws.endpoint_url, "--region", "eu-west-1"]
    code = main(["demo", "--files", "1", "--json", *endpoint])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0, summary
    sqs = aws.session().client("sqs", endpoint_url=aws.endpoint_url, region_name="eu-west-1")
    assert sqs.get_queue_url(QueueName="transflow-demo-main-processing.fifo")["QueueUrl"]


def test_connection_options_a_command_ignores_are_not_offered() -> None:
    for argv in (["demo", "--config", "x.json"], ["local", "--endpoint-url", "http://x"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
