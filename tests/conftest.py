"""The test harness: one moto server per session, fresh state per test, never real AWS.

Integration tests take the ``aws`` fixture (or ``sqs``/``s3`` clients) and talk to moto over
HTTP on a loopback port. Pure unit tests take nothing and touch no network.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

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


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Whatever a test or an example does to os.environ is undone after it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def aws_server() -> Iterator[LocalAws]:
    """moto's server, started once per test session on a free loopback port."""
    with LocalAws() as server:
        yield server


@pytest.fixture
def aws(aws_server: LocalAws) -> LocalAws:
    """The moto server, wiped clean for this test."""
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
