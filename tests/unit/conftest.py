"""The unit layer stays pure: a unit test that opens a connection to anything fails.

Code under test may swallow the error a blocked connection raises (the webhook sender never
raises, botocore retries), so the attempt is also recorded and fails the test at teardown.
Anything that needs an endpoint belongs in tests/integration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class NetworkInUnitTestError(RuntimeError):
    """A unit test tried to open a connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: list[str] = []

    def refuse(_sock: socket.socket, address: Any, *_: Any) -> None:
        attempts.append(repr(address))
        raise NetworkInUnitTestError(
            f"a unit test connected to {address!r}: move it to tests/integration"
        )

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
    if attempts:
        pytest.fail(f"connections attempted: {', '.join(attempts)}; unit tests touch no network")


@pytest.fixture
def signer() -> S3Client:
    """A real S3 client; presigning never leaves the process."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    ).client("s3", config=Config(signature_version="s3v4"))
