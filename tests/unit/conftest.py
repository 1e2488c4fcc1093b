"""The unit layer stays pure: a unit test that opens a connection to anything fails.

Code under test may swallow the error a blocked connection raises (the webhook sender never
raises, botocore retries), so the attempt is also recorded and fails the test at teardown.
Anything that needs an endpoint belongs in tests/integration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest


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
