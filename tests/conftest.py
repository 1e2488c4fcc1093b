"""The test harness: one moto server per session, fresh state per test, never real AWS.

Integration tests take the ``aws`` fixture (or ``sqs``/``s3`` clients) and talk to moto over
HTTP on a loopback port. Pure unit tests take nothing and touch no network.

With ``TRANSFLOW_TEST_ENDPOINT=http://127.0.0.1:4566`` the same fixtures talk to that endpoint
instead (LocalStack, started by ``make fidelity``): no moto server is started, each test
starts from an endpoint emptied of queues, topics and buckets, and tests marked
``moto_only("reason")`` are skipped there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.endpoint import (
    ENDPOINT_VARIABLE,
    RemoteEndpoint,
    loopback_endpoint,
    on_other_endpoint,
)
from transflow.cli.local import LocalAws, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def _scrub_aws_environment() -> None:
    # Tests must never find real credentials or a real profile, whatever the machine has.
    for name in list(os.environ):
        if name.startswith(("AWS_", "BOTO_")) or name in {"REDIS_URL", "SQS_QUEUE_URL"}:
            del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )


_scrub_aws_environment()
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "moto_only(reason): relies on behaviour of moto's server that the other endpoint "
        f"({ENDPOINT_VARIABLE}) does not share; skipped there, with the reason",
    )
    config.addinivalue_line(
        "markers",
        "localstack_xfail(reason): a known difference on LocalStack that is not ours to fix "
        f"here; a strict xfail on the other endpoint ({ENDPOINT_VARIABLE}), with the reason",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not on_other_endpoint():
        return
    for item in items:
        marker = item.get_closest_marker("moto_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"moto only: {_reason(marker)}"))
        marker = item.get_closest_marker("localstack_xfail")
        if marker is not None:
            item.add_marker(pytest.mark.xfail(reason=_reason(marker), strict=True))


def _reason(marker: pytest.Mark) -> str:
    return str(marker.args[0] if marker.args else marker.kwargs.get("reason", ""))


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Whatever a test or an example does to os.environ is undone after it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def aws_server() -> Iterator[LocalAws]:
    """moto's server, started once per test session on a free loopback port; or the
    endpoint ``TRANSFLOW_TEST_ENDPOINT`` names (loopback only), which is left running."""
    url = os.environ.get(ENDPOINT_VARIABLE)
    if url:
        yield RemoteEndpoint(url=loopback_endpoint(url))
        return
    with LocalAws() as server:
        yield server


@pytest.fixture
def aws(aws_server: LocalAws) -> LocalAws:
    """The endpoint, wiped clean for this test."""
    aws_server.reset()
    return aws_server


@pytest.fixture
def sqs(aws: LocalAws) -> SQSClient:
    """An SQS client on the fresh moto server."""
    return aws.sqs()


@pytest.fixture
def s3(aws: LocalAws) -> S3Client:
    """An S3 client on the fresh moto server."""
    return aws.s3()


@pytest.fixture
def s3v4(aws: LocalAws) -> S3Client:
    """An S3 client that signs POST policies with SigV4, as production must."""
    return aws.s3(local_client_config(signature_version="s3v4"))
