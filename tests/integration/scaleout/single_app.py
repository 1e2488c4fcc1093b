"""The stream server of the default-mode (one progress queue) server tests: a hub on the
shared progress queue, served by the WSGI app (``wsgi``, the hub started at import: in each
gunicorn worker, or in the master under ``--preload``) and the ASGI app (``asgi``, the hub
started in each uvicorn worker's lifespan). With ``SINGLE_CALLS`` set, each ReceiveMessage
and DeleteMessage(Batch) the hub's client makes is written there with its process id, and
each fork as "forked" by the parent."""

from __future__ import annotations

import os
from typing import Any

import boto3

from transflow import ProgressHub, ProgressQueue
from transflow.cli.local import local_client_config
from transflow.streaming.apps import asgi_app, wsgi_app

_session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
_sqs = _session.client(
    "sqs", endpoint_url=os.environ["SCALEOUT_ENDPOINT"], config=local_client_config()
)
_calls = os.environ.get("SINGLE_CALLS")


def _write(what: str) -> None:
    if _calls:
        with open(_calls, "a") as out:
            out.write(f"{os.getpid()} {what}\n")


def _record(model: Any, **_: Any) -> None:
    if model.name in ("ReceiveMessage", "DeleteMessage", "DeleteMessageBatch"):
        _write(model.name)


_sqs.meta.events.register("before-call.sqs", _record)
# Registered before the hub starts, so the mark comes before the hub's own at-fork hook.
os.register_at_fork(after_in_parent=lambda: _write("forked"))
hub = ProgressHub(_sqs, ProgressQueue(os.environ["SINGLE_PROGRESS_URL"]), wait_time_seconds=1)

asgi = asgi_app(hub, allow_anonymous=True, heartbeat=1.0, retry=1000, manage_hub=True)


def __getattr__(name: str) -> Any:
    if name == "wsgi":
        return wsgi_app(hub.start(), allow_anonymous=True, heartbeat=1.0, retry=1000)
    raise AttributeError(name)
