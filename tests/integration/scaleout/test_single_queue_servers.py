"""The default mode (one progress queue) under real multi-process servers (issue 20 item 1):
gunicorn -w 2 (gthread) and uvicorn --workers 2. Each subscriber either gets every event of
its upload or is answered 503 with the reason, and the refusing process's ERROR is in the
server log: never a 200 with a part of the events. Under ``gunicorn --preload`` the master,
which started the hub at import, consumes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
from httpx_sse import connect_sse

from tests.integration.scaleout.support import BIN, ROOT, free_port, wait_ready
from tests.support.streaming import fifo_queue, wait_until
from transflow import ProgressEvent, ProgressPublisher, ProgressQueue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

pytestmark = pytest.mark.timeout(120)

REASON = "another progress hub"
APP = "tests.integration.scaleout.single_app"


@attrs.define
class Running:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start(kind: str, endpoint: str, url: str, tmp_path: Path, *extra: str) -> Running:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(
        SCALEOUT_ENDPOINT=endpoint,
        SINGLE_PROGRESS_URL=url,
        SINGLE_CALLS=str(tmp_path / "calls.txt"),
    )
    port = free_port()
    if kind == "gunicorn":
        args = [str(BIN / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "20"]
        args += ["-b", f"127.0.0.1:{port}", "--graceful-timeout", "3", "--log-level", "warning"]
        args += [*extra, f"{APP}:wsgi"]
    else:
        args = [str(BIN / "uvicorn"), "--workers", "2", "--port", str(port)]
        args += ["--log-level", "warning", "--timeout-graceful-shutdown", "2", f"{APP}:asgi"]
    log = tmp_path / f"{kind}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    running = Running(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(running.base)
    except BaseException:
        running.stop()
        raise
    return running


@attrs.define
class Subscriber:
    """One SSE client: the events of its upload until ``done``, or the refusal's text."""

    base: str
    upload: str
    seqs: list[int] = attrs.field(factory=list)
    refused: str | None = None
    answered: threading.Event = attrs.field(factory=threading.Event)
    finished: threading.Event = attrs.field(factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> Subscriber:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        url = f"{self.base}/?channel=upload:main:{self.upload}"
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
                connect_sse(client, "GET", url) as source,
            ):
                if source.response.status_code == 503:
                    self.refused = source.response.read().decode()
                    return
                source.response.raise_for_status()
                for sse in source.iter_sse():
                    if sse.event == "snapshot":
                        self.answered.set()
                    elif sse.event == "message":
                        event = json.loads(sse.data)
                        self.seqs.append(event["seq"])
                        if event["type"] == "done":
                            return
        except BaseException as exc:
            self.error = exc
        finally:
            self.answered.set()
            self.finished.set()


def publish(sqs: SQSClient, url: str, uploads: list[str], count: int) -> dict[str, list[int]]:
    publisher = ProgressPublisher(ProgressQueue(url), sqs=sqs, flush_after=0.05)
    sent = {}
    for upload in uploads:
        with publisher.stream(upload, "main") as stream:
            seqs = [stream.emit("progress", percent=i).seq for i in range(count - 1)]
            seqs.append(stream.emit("done").seq)
        sent[upload] = [s for s in seqs if s is not None]
    return sent


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_two_worker_processes_on_one_queue_serve_everything_or_refuse_loudly(
    kind: str, tmp_path: Path, aws: LocalAws, sqs: SQSClient
) -> None:
    url = fifo_queue(sqs, f"single-{kind}-progress.fifo")
    server = start(kind, aws.endpoint_url, url, tmp_path)
    try:
        # Both workers started a hub; the one without the lease says so at start.
        wait_until(lambda: REASON in server.text(), 15, "the second hub's ERROR")
        uploads = ["a", "b"]
        subscribers = [Subscriber(server.base, uploads[i % 2]).start() for i in range(10)]
        for subscriber in subscribers:
            assert subscriber.answered.wait(15), "no snapshot and no refusal"
        sent = publish(sqs, url, uploads, 12)
        for subscriber in subscribers:
            assert subscriber.finished.wait(15), (subscriber.upload, subscriber.seqs)
            assert subscriber.error is None, subscriber.error
            if subscriber.refused is not None:
                assert REASON in subscriber.refused
                assert "sqs.progressFanout to 'sns'" in subscriber.refused
            else:
                assert subscriber.seqs == sent[subscriber.upload]
    finally:
        server.stop()
    served = sum(s.refused is None for s in subscribers)
    print(f"{kind}: {served} of {len(subscribers)} subscribers served in full, the rest 503")


def test_the_gunicorn_preload_master_consumes_nothing(
    tmp_path: Path, aws: LocalAws, sqs: SQSClient
) -> None:
    url = fifo_queue(sqs, "single-preload-progress.fifo")
    server = start("gunicorn", aws.endpoint_url, url, tmp_path, "--preload")
    try:
        sent = publish(sqs, url, ["p"], 6)
        # The workers refuse (the hub was started in another process): loudly.
        subscriber = Subscriber(server.base, "p").start()
        assert subscriber.finished.wait(15)
        assert subscriber.refused is not None, subscriber.seqs
        assert "--preload" in subscriber.refused
    finally:
        server.stop()
    master = str(server.process.pid)
    calls: list[Any] = (tmp_path / "calls.txt").read_text().split("\n")
    deletes = [c for c in calls if c.startswith(master + " Delete")]
    assert deletes == []
    # The master stops reading at its first fork, though the server ran for seconds with a
    # 1 s long poll. This app's fork mark is written before the hub's own at-fork hook runs,
    # so one receive may start between the two (it then releases what it brings); none
    # starts after the last fork, by which time the hook has run.
    receive = f"{master} ReceiveMessage"
    first = calls.index(f"{master} forked")
    last = len(calls) - 1 - calls[::-1].index(f"{master} forked")
    assert calls[first:].count(receive) <= 1, calls[first:]
    assert receive not in calls[last:], calls[first:]
    # Every event is still in the queue for a hub that serves streams.
    left: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            break
        left += [m["Body"] for m in got["Messages"]]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(got["Messages"])
            ],
        )
    assert (
        sorted(e.seq or 0 for body in left for e in ProgressEvent.all_from_json(body)) == sent["p"]
    )
