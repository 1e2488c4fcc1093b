"""Webhook signatures: what receivers check, and what verify refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import WebhookSignatureError
from transflow.processing.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMPED_SIGNATURE_HEADER,
    sign,
    verify,
)

SECRET = "s3cr3t"
BODY = b'{"ok":"ASSEMBLY_COMPLETED"}'
NOW = 1_800_000_000


def test_plain_signature_is_the_hmac_existing_receivers_check() -> None:
    headers = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert headers["X-Transflow-Timestamp"] == str(NOW)
    verify(SECRET, BODY, headers, now=NOW + 299)


def test_headers_are_read_case_insensitively() -> None:
    headers = {k.lower(): v for k, v in sign(SECRET, BODY, NOW).items()}
    verify(SECRET, BODY.decode(), headers, now=NOW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("body", "does not match"),
        ("secret", "does not match"),
        ("old", "outside the 300 s tolerance"),
        ("future", "outside the 300 s tolerance"),
        ("missing", "has no"),
        ("garbled", "must read"),
        ("restamped", "does not match"),
    ],
)
def test_verify_refuses(change: str, match: str) -> None:
    headers = sign(SECRET, BODY, NOW)
    body, secret, now = BODY, SECRET, NOW
    if change == "body":
        body = BODY.replace(b"COMPLETED", b"EXECUTING")
    elif change == "secret":
        secret = "other"
    elif change == "old":
        now = NOW + 301
    elif change == "future":
        now = NOW - 301
    elif change == "missing":
        del headers[TIMESTAMPED_SIGNATURE_HEADER]
    elif change == "garbled":
        headers[TIMESTAMPED_SIGNATURE_HEADER] = "v1=abc"
    elif change == "restamped":  # a replay with a fresh timestamp but the old signature
        old = headers[TIMESTAMPED_SIGNATURE_HEADER].split(",")[1]
        headers[TIMESTAMPED_SIGNATURE_HEADER] = f"t={NOW + 1000},{old}"
        now = NOW + 1000
    with pytest.raises(WebhookSignatureError, match=match):
        verify(secret, body, headers, now=now)


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=200))
def test_any_changed_body_is_refused(body: bytes, change: bytes) -> None:
    headers = sign(SECRET, body, NOW)
    verify(SECRET, body, headers, now=NOW)
    with pytest.raises(WebhookSignatureError):
        verify(SECRET, body + change, headers, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        f"t={NOW},v1=ü" + "a" * 63,  # non-ASCII: compare_digest would raise TypeError
        f"t={NOW},v1=" + "é" * 64,
        "t=²,v1=" + "a" * 64,  # "²".isdigit() is true, int("²") raises ValueError
        "t=" + "9" * 5000 + ",v1=" + "a" * 64,  # past int()'s digit limit
        f"t={NOW},v1=" + "A" * 64,
        f"t={NOW},v1=" + "a" * 65,
        "t=-1,v1=" + "a" * 64,
    ],
)
def test_hostile_signature_headers_are_typed_refusals(header: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(SECRET, BODY, {TIMESTAMPED_SIGNATURE_HEADER: header}, now=NOW)


def test_a_non_ascii_plain_signature_is_a_typed_refusal() -> None:
    headers = sign(SECRET, BODY, NOW)
    headers[SIGNATURE_HEADER] = "sha256=ü"
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(SECRET, BODY, headers, now=NOW)
    with pytest.raises(WebhookSignatureError, match="surrogates"):
        verify(SECRET, "\udc80", sign(SECRET, BODY, NOW), now=NOW)


@given(
    st.dictionaries(
        st.sampled_from([TIMESTAMPED_SIGNATURE_HEADER, SIGNATURE_HEADER, "x"]) | st.text(),
        st.text(),
    ),
    st.binary(max_size=100),
)
def test_any_headers_give_a_typed_refusal_never_another_error(
    headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(SECRET, body, headers, now=NOW)
