"""``make fidelity``: the integration tests again, on LocalStack instead of moto.

Starts LocalStack's runtime from its own venv in host mode (no Docker), listening on a free
loopback port only, with SQS, S3 and SNS; waits until its health endpoint reports the three
services up (with a deadline); runs pytest with ``TRANSFLOW_TEST_ENDPOINT`` pointing at it;
stops it whatever happened. The exit code is pytest's.

    python tests/fidelity/run.py --localstack .venv-localstack/bin/python -- PYTEST_ARGS...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVICES = ("sqs", "s3", "sns")
START_DEADLINE = 180.0
STOP_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def localstack_environment(port: int, volume: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
    env.update(
        {
            # Host mode even inside a container: LocalStack guesses "in Docker" from cgroups
            # and would then listen on 0.0.0.0.
            "OVERRIDE_IN_DOCKER": "0",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            # hypercorn binds the address given; the default (twisted) binds every interface.
            "GATEWAY_SERVER": "hypercorn",
            "SERVICES": ",".join(SERVICES),
            "EAGER_SERVICE_LOADING": "1",
            # Queue URLs in LocalStack's path-style form (/queue/{region}/{account}/{name}),
            # which transflow's config once refused; its other forms are unit-tested.
            "SQS_ENDPOINT_STRATEGY": "path",
            # Nothing leaves the machine: no DNS server, no telemetry, no certificate fetch.
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LOCALSTACK_VOLUME_DIR": str(volume),
            "TMPDIR": str(volume),
        }
    )
    return env


def health(url: str) -> dict[str, str]:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=5) as response:
            return dict(json.load(response).get("services", {}))
    except (OSError, urllib.error.URLError, ValueError):
        return {}


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"LocalStack exited with {process.returncode}:\n{log.read_text()}")
        services = health(url)
        if all(services.get(name) in {"available", "running"} for name in SERVICES):
            return
        time.sleep(0.5)
    raise SystemExit(
        f"LocalStack not ready after {START_DEADLINE:.0f} s: {health(url)}\n{log.read_text()}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--localstack", required=True, help="the python of LocalStack's venv")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="transflow-localstack-") as scratch:
        log = Path(scratch) / "localstack.log"
        volume = Path(scratch) / "volume"
        volume.mkdir()
        started = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [args.localstack, "-m", "localstack.runtime.main"],
                env=localstack_environment(port, volume),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_ready(url, process, log)
            print(f"LocalStack up on {url} in {time.monotonic() - started:.1f} s", flush=True)
            env = dict(os.environ, TRANSFLOW_TEST_ENDPOINT=url)
            return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], env=env)
        finally:
            stopping = time.monotonic()
            stop(process)
            print(f"LocalStack stopped in {time.monotonic() - stopping:.1f} s", flush=True)
            errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
            if errors:
                print(f"LocalStack logged {len(errors)} errors; the first:", *errors[:5], sep="\n")


if __name__ == "__main__":
    sys.exit(main())
