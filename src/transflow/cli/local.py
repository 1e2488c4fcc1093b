"""An embedded SQS/S3 endpoint for development, demos and tests: moto's server on loopback.

Needs the ``local`` extra (``pip install 'transflow[local]'``). Nothing here is used in
production; it exists so that the whole pipeline runs on a laptop with no AWS account, over
real HTTP, exactly as it talks to AWS.
"""

from __future__ import annotations

import logging
import secrets
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

__all__ = ["LocalAws", "local_client_config", "local_environment"]

DUMMY_REGION = "us-east-1"
DUMMY_KEY = "testing"


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
                "the embedded endpoint needs moto's server: pip install 'transflow[local]'"
            ) from exc
        if self.quiet:
            # moto's server logs every request through werkzeug at INFO.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
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
