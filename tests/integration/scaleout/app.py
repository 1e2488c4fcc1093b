"""The stream server of the scale-out tests and benchmark, as a module gunicorn and uvicorn
import: a hub in fan-out mode, served by the WSGI app (``wsgi``, the hub started at import,
so under ``gunicorn --preload`` it starts in the master and must restart in each worker;
stopped by the hooks in ``gunicorn_hooks.py`` beside it) and the ASGI app (``asgi``, which
starts and stops the hub in the lifespan). Configured by the environment the test sets."""

from __future__ import annotations

import os
from typing import Any

import boto3

from transflow import ProgressHub, ProgressTopic
from transflow.cli.local import local_client_config
from transflow.streaming.apps import asgi_app, wsgi_app

_session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
_endpoint = os.environ["SCALEOUT_ENDPOINT"]
hub = ProgressHub(
    _session.client("sqs", endpoint_url=_endpoint, config=local_client_config()),
    ProgressTopic(os.environ["SCALEOUT_TOPIC_ARN"]),
    sns=_session.client("sns", endpoint_url=_endpoint, config=local_client_config()),
    instance_prefix=os.environ["SCALEOUT_PREFIX"],
    wait_time_seconds=1,
    instance_stale_after=6,  # a heartbeat every 2 s: a killed instance is stale in seconds
)

asgi = asgi_app(hub, allow_anonymous=True, heartbeat=1.0, retry=1000, manage_hub=True)


def __getattr__(name: str) -> Any:
    # gunicorn asks for `wsgi` at import (in the master, with --preload): the hub starts
    # then, and only for gunicorn (uvicorn's lifespan starts it for `asgi`).
    if name == "wsgi":
        return wsgi_app(hub.start(), allow_anonymous=True, heartbeat=1.0, retry=1000)
    raise AttributeError(name)
