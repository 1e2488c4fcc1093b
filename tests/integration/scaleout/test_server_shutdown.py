"""Fan-out hubs on every server the docs name (gunicorn, uvicorn, waitress, hypercorn) leave
nothing behind when the server is stopped the way systemd and Kubernetes stop it: SIGTERM to
the whole process group (``os.killpg``), workers included, with a stream open. After the
server exits, its instance queues and their subscriptions are gone, with no sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.scaleout.support import (
    BIN,
    ROOT,
    Follower,
    _environment,
    free_port,
    wait_ready,
)
from tests.support.streaming import wait_until
from transflow import load_config
from transflow.ops.provision import ensure_topic

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

pytestmark = pytest.mark.timeout(90)


def _command(kind: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if kind == "gunicorn":  # the documented hooks: tests/integration/scaleout/gunicorn_hooks.py
        return [
            str(BIN / "gunicorn"),
            *("-w", "2", "-k", "gthread", "--threads", "8", "-b", bind),
            *("--graceful-timeout", "10", "--log-level", "warning"),
            *(
                "-c",
                "python:tests.integration.scaleout.gunicorn_hooks",
                "tests.integration.scaleout.app:wsgi",
            ),
        ]
    if kind == "uvicorn":  # asgi_app(..., manage_hub=True)
        return [
            str(BIN / "uvicorn"),
            *("--port", str(port), "--log-level", "warning"),
            *("--timeout-graceful-shutdown", "2", "tests.integration.scaleout.app:asgi"),
        ]
    if kind == "waitress":  # nothing but the hub, started at import
        return [
            str(BIN / "waitress-serve"),
            f"--listen={bind}",
            "tests.integration.scaleout.app:wsgi",
        ]
    assert kind == "hypercorn"  # asgi_app(..., manage_hub=True), in a spawned worker
    return [
        str(BIN / "hypercorn"),
        *("-b", bind, "-w", "2", "--graceful-timeout", "2"),
        "tests.integration.scaleout.app:asgi",
    ]


def _queues(sqs: SQSClient, prefix: str) -> list[str]:
    return sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls") or []


def _subscriptions(sns: SNSClient, topic: str) -> list[Any]:
    return sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn", "waitress", "hypercorn"])
def test_sigterm_to_the_process_group_removes_every_instance_queue(
    tmp_path: Any, aws: LocalAws, kind: str
) -> None:
    sqs, sns = aws.sqs(), aws.sns()
    config_path = tmp_path / "transflow.config.json"
    config_path.write_text(json.dumps({"project": "down", "sqs": {"progressFanout": "sns"}}))
    config = load_config(config_path, env={})
    topic = ensure_topic(sns, config)
    prefix = config.instance_queue_prefix
    port = free_port()
    env = _environment(aws.endpoint_url, topic, prefix)
    # Its own process group, as systemd and Kubernetes run a service.
    server = subprocess.Popen(_command(kind, port), env=env, cwd=ROOT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        follower = Follower(base, "u1").start()  # a stream open at the signal
        assert follower.subscribed.wait(30), "no snapshot"
        assert follower.error is None, follower.error
        processes = 2 if kind in {"gunicorn", "hypercorn"} else 1  # one hub per worker
        wait_until(
            lambda: len(_queues(sqs, prefix)) == processes,
            timeout=30,
            what=f"{processes} instance queues",
        )
        assert _subscriptions(sns, topic)

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

        assert _queues(sqs, prefix) == [], f"{kind} left its instance queues"
        assert _subscriptions(sns, topic) == [], f"{kind} left its subscriptions"
        assert follower.finished.wait(10), "the stream did not end"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
