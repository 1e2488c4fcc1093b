"""``transflow local`` serves an endpoint the ``transflow`` command can use through the
environment it prints, and stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transflow.cli.app import main


def _exports(text: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in text.splitlines())
    return dict(pair for pair in pairs if len(pair) == 2)


def test_the_local_endpoint_serves_the_command_until_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "local.env"
    process = subprocess.Popen(
        [sys.executable, "-m", "transflow", "local", "--port", "0", "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() or not env_file.read_text().endswith("\n"):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "transflow local printed no environment"
            time.sleep(0.05)
        exported = _exports(env_file.read_text())
        assert exported["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert exported["AWS_DEFAULT_REGION"] == "us-east-1"
        for name, value in exported.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        assert main(["init", "--project", "myapp"]) == 0
        assert main(["queues", "ensure"]) == 0
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["healthy"] is True
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert _exports(out) == exported
    assert "transflow local: stopped" in err


def test_init_writes_the_region_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--project", "myapp", "--region", "eu-west-1"]) == 0
    data = json.loads((tmp_path / "transflow.config.json").read_text())
    assert data["region"] == "eu-west-1"


def test_a_taken_port_fails_at_once_and_suggests_another() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Before, the embedded server waited forever for a bind that had failed: the
        # subprocess deadline fired instead of an exit.
        done = subprocess.run(
            [sys.executable, "-m", "transflow", "local", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"port {port}" in done.stderr
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # no environment printed for an endpoint that is not there
