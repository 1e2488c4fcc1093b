"""An embedded SQS/S3 endpoint for development, demos and tests: moto's server on loopback.

Needs the ``local`` extra (``pip install -e '.[local]'`` in a clone of transflow). Nothing
here is used in production; it exists so that the whole pipeline runs on a laptop with no
AWS account, over real HTTP, exactly as it talks to AWS.
"""

from __future__ import annotations

import errno
import logging
import re
import secrets
import socket
import threading
import urllib.request
from typing import TYPE_CHECKING, Any

import attrs
import boto3
from botocore.config import Config

from transflow._wire.tokens import ENV_STREAM_SECRET
from transflow.errors import TransflowError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["LocalAws", "PortInUseError", "local_client_config", "local_environment"]

DUMMY_REGION = "us-east-1"
DUMMY_KEY = "testing"
START_TIMEOUT_SEC = 30.0
"""How long :meth:`LocalAws.start` waits for the server to listen."""

_UNIMPLEMENTED = re.compile(r"NotImplementedError: The (\w+) action has not been implemented")


class PortInUseError(TransflowError):
    """The embedded endpoint's port is taken by another program."""


class _UnimplementedActionFilter(logging.Filter):
    """moto answers an action it lacks with a 500 and logs its whole traceback; transflow
    calls such actions on purpose (StartMessageMoveTask, then it re-sends), so the log
    gets one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        found = _UNIMPLEMENTED.search(record.getMessage())
        if found is not None:
            record.msg = (
                f"the embedded endpoint has no {found[1]}: answered 500 (transflow falls "
                "back where it can)"
            )
            record.args = ()
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` when something listens on ``host:port``: moto's
    server would print werkzeug's message in its thread and then wait forever."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As werkzeug binds: SO_REUSEADDR, so a socket in TIME_WAIT does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUseError(
                f"port {port} on {host} is in use by another program (another 'transflow "
                "local'?): stop it, or pick another port with --port N (0 picks a free one)"
            ) from exc
        raise
    finally:
        probe.close()


def local_environment(
    endpoint_url: str, region: str = DUMMY_REGION, *, stream_secret: str | None = None
) -> dict[str, str]:
    """The environment that points boto3 (and so the ``transflow`` command and your code)
    at an embedded endpoint: ``AWS_ENDPOINT_URL``, dummy credentials and a region, plus a
    ``TRANSFLOW_STREAM_SECRET`` (fresh and random unless given) so that stream endpoints,
    which refuse to start unprotected, run locally as they do deployed."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": region,
        ENV_STREAM_SECRET: stream_secret or secrets.token_urlsafe(32),
    }


def local_client_config(**overrides: Any) -> Config:
    """A botocore config for an embedded endpoint: path-style S3, standard retries."""
    settings: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 3},
        "s3": {"addressing_style": "path"},
        "max_pool_connections": 50,
    }
    settings.update(overrides)
    return Config(**settings)


@attrs.define
class LocalAws:
    """moto's server on a free loopback port, with clients bound to it.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`reset` wipes
    every queue and bucket, which tests use to start each case from nothing.
    """

    host: str = "127.0.0.1"
    port: int = 0
    region: str = DUMMY_REGION
    quiet: bool = True
    _server: Any = attrs.field(default=None, init=False, repr=False)
    _bound_port: int | None = attrs.field(default=None, init=False)

    def start(self) -> LocalAws:
        """Start the server (port 0 picks a free port) and return self."""
        try:
            # Imported here: moto is the optional 'local' extra, never needed in production.
            from moto.server import ThreadedMotoServer  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise TransflowError(
                "the embedded endpoint needs moto's server, from transflow's 'local' extra: "
                "pip install -e '.[local]' in a clone of transflow (transflow is not on PyPI)"
            ) from exc
        if self.quiet:
            # moto's server logs every request through werkzeug at INFO.
            werkzeug = logging.getLogger("werkzeug")
            werkzeug.setLevel(logging.WARNING)
            if not any(isinstance(f, _UnimplementedActionFilter) for f in werkzeug.filters):
                werkzeug.addFilter(_UnimplementedActionFilter())
        _check_port_free(self.host, self.port)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        # moto's start() waits without end when the bind fails in its thread (a port taken
        # between the check above and now): wait here, with a deadline, instead.
        started = threading.Event()

        def start() -> None:
            server.start()
            started.set()

        threading.Thread(target=start, name="transflow-local-start", daemon=True).start()
        if not started.wait(START_TIMEOUT_SEC):
            raise PortInUseError(
                f"the embedded endpoint did not start on {self.host}:{self.port} within "
                f"{START_TIMEOUT_SEC:.0f} s (is the port in use?): pick another with --port N"
            )
        self._server = server
        self._bound_port = server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        """Stop the server; its state is lost."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:{port}``, once started."""
        if self._bound_port is None:
            raise TransflowError("LocalAws is not started: call start() first")
        return f"http://{self.host}:{self._bound_port}"

    def reset(self) -> None:
        """Delete every queue, bucket and object on the endpoint (moto's reset API)."""
        request = urllib.request.Request(  # noqa: S310 - our own loopback endpoint
            f"{self.endpoint_url}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()

    def session(self) -> boto3.session.Session:
        """A boto3 session with dummy credentials, never the caller's real ones."""
        return boto3.session.Session(
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_KEY,
            region_name=self.region,
        )

    def sqs(self, config: Config | None = None) -> SQSClient:
        """An SQS client bound to the endpoint."""
        return self.session().client(
            "sqs", endpoint_url=self.endpoint_url, config=config or local_client_config()
        )

    def sns(self, config: Config | None = None) -> SNSClient:
        """An SNS client bound to the endpoint (fan-out mode's progress topic)."""
        return self.session().client(
            "sns", endpoint_url=self.endpoint_url, config=config or local_client_config()
        )

    def s3(self, config: Config | None = None) -> S3Client:
        """An S3 client bound to the endpoint."""
        return self.session().client(
            "s3", endpoint_url=self.endpoint_url, config=config or local_client_config()
        )
