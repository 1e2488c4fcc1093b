"""Real stream servers in fan-out mode for the scale-out test and benchmark: gunicorn
(gthread workers, optionally ``--preload``) and uvicorn processes serving
``tests/integration/scaleout/app.py``, and SSE subscribers reading them with httpx-sse."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx
from httpx_sse import connect_sse

ROOT = Path(__file__).parents[3]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(endpoint: str, topic_arn: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, str(ROOT), env.get("PYTHONPATH", "")])
    env.update(SCALEOUT_ENDPOINT=endpoint, SCALEOUT_TOPIC_ARN=topic_arn, SCALEOUT_PREFIX=prefix)
    return env


def wait_ready(base: str, deadline: float = 30.0) -> None:
    """Until the server answers (a request without a channel is a quick 400)."""
    end = time.monotonic() + deadline
    while True:
        try:
            httpx.get(base + "/", timeout=2)
        except httpx.TransportError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)  # polling a port that is not open yet; nothing to wait on
        else:
            return


@attrs.define
class Server:
    kind: str
    base: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def gunicorn(env: dict[str, str], *, workers: int, preload: bool = False) -> Server:
    port = free_port()
    args = [
        str(BIN / "gunicorn"),
        "-w",
        str(workers),
        "-k",
        "gthread",
        "--threads",
        "40",
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "3",
        "--log-level",
        "warning",
        "-c",
        "python:tests.integration.scaleout.gunicorn_hooks",
        *(["--preload"] if preload else []),
        "tests.integration.scaleout.app:wsgi",
    ]
    process = subprocess.Popen(args, env=env, cwd=ROOT)
    return Server("gunicorn", f"http://127.0.0.1:{port}", process)


def uvicorn(env: dict[str, str]) -> Server:
    port = free_port()
    args = [
        str(BIN / "uvicorn"),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "2",
        "tests.integration.scaleout.app:asgi",
    ]
    process = subprocess.Popen(args, env=env, cwd=ROOT)
    return Server("uvicorn", f"http://127.0.0.1:{port}", process)


@contextmanager
def servers(
    endpoint: str,
    topic_arn: str,
    prefix: str,
    *,
    gunicorn_workers: int = 4,
    uvicorns: int = 2,
    preload: bool = False,
) -> Iterator[list[Server]]:
    env = _environment(endpoint, topic_arn, prefix)
    started: list[Server] = []
    try:
        if gunicorn_workers:
            started.append(gunicorn(env, workers=gunicorn_workers, preload=preload))
        started.extend(uvicorn(env) for _ in range(uvicorns))
        for server in started:
            wait_ready(server.base)
        yield started
    finally:
        for server in started:
            server.stop()


@attrs.define
class Follower:
    """One SSE subscriber on httpx-sse: the events of one upload until ``done``."""

    base: str
    upload: str
    events: list[dict[str, object]] = attrs.field(factory=list)
    arrived: list[float] = attrs.field(factory=list)
    subscribed: threading.Event = attrs.field(factory=threading.Event)
    finished: threading.Event = attrs.field(factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> Follower:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        url = f"{self.base}/?channel=upload:main:{self.upload}"
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
                connect_sse(client, "GET", url) as source,
            ):
                source.response.raise_for_status()
                for sse in source.iter_sse():
                    if sse.event == "snapshot":
                        json.loads(sse.data)
                        self.subscribed.set()
                        continue
                    assert sse.event == "message", sse.event
                    event = json.loads(sse.data)  # an empty message would fail here
                    self.arrived.append(time.time())
                    self.events.append(event)
                    if event["type"] == "done":
                        return
        except BaseException as exc:
            self.error = exc
        finally:
            self.subscribed.set()
            self.finished.set()
