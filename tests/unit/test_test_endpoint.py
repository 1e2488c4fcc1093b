"""The test harness's second endpoint (``TRANSFLOW_TEST_ENDPOINT``): loopback only."""

from __future__ import annotations

import pytest

from tests.support.endpoint import loopback_endpoint


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:4566", "http://127.0.0.1:4566"),
        ("http://127.0.0.1:4566/", "http://127.0.0.1:4566"),
        ("http://localhost:4566", "http://localhost:4566"),
        ("http://127.0.0.2:5000", "http://127.0.0.2:5000"),
    ],
)
def test_a_loopback_endpoint_is_accepted(url: str, expected: str) -> None:
    assert loopback_endpoint(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:4566",
        "http://192.168.1.2:4566",
        "http://example.com:4566",
        "http://localhost.localstack.cloud:4566",
        "https://127.0.0.1:4566",
        "http://127.0.0.1",
        "127.0.0.1:4566",
        "",
    ],
)
def test_anything_but_loopback_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="TRANSFLOW_TEST_ENDPOINT"):
        loopback_endpoint(url)
