"""Stream tokens: what they grant, and that every other text is a typed refusal."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st

from transflow import (
    ChannelError,
    ConfigError,
    StreamTokenError,
    StreamTokenExpiredError,
    StreamTokenForgedError,
    StreamTokenMalformedError,
    UploadTicket,
    UserContext,
    create_upload,
    issue_stream_token,
    load_config,
    verify_stream_token,
)
from transflow._wire.tokens import MAX_TOKEN_CHARS, MAX_TOKEN_TTL

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "Zr4nTq9xW2bLkVp8sYc3Hd6JfM0aGe1uQo5iNt7R"
OTHER = "pQ8vX3mK9wL2cR7tY4nB6hJ1dF5sG0zAeU_-iOqW"
NOW = 1_800_000_000
CHANNEL = "upload:main:up-1"


def test_a_token_grants_its_channel_to_its_user_until_it_expires() -> None:
    token = issue_stream_token(SECRET, CHANNEL, user_id="alice", ttl=60, now=NOW)
    assert token.startswith("tf1.")
    grant = verify_stream_token(SECRET, token, now=NOW + 59)
    assert (grant.channel, grant.user_id, grant.expires_at) == (CHANNEL, "alice", NOW + 60)
    assert grant.allows(CHANNEL)
    assert not grant.allows("upload:main:up-2")
    assert not grant.allows("upload:main:*")  # one upload's token never opens the branch
    assert not grant.is_operator
    with pytest.raises(StreamTokenExpiredError, match="expired"):
        verify_stream_token(SECRET, token, now=NOW + 60)


def test_an_operator_token_covers_its_branch_only() -> None:
    grant = verify_stream_token(
        SECRET, issue_stream_token(SECRET, "upload:main:*", now=NOW), now=NOW
    )
    assert grant.is_operator
    assert grant.allows("upload:main:*")
    assert grant.allows("upload:main:anything")
    assert not grant.allows("upload:mainly:x")
    assert not grant.allows("upload:other:*")


def _reseal(token: str, change: dict[str, object]) -> str:
    version, payload, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(change)
    text = json.dumps(data, separators=(",", ":")).encode()
    return f"{version}.{base64.urlsafe_b64encode(text).rstrip(b'=').decode()}.{mac}"


def test_changed_or_foreign_tokens_are_forged() -> None:
    token = issue_stream_token(SECRET, CHANNEL, ttl=60, now=NOW)
    with pytest.raises(StreamTokenForgedError, match="another secret"):
        verify_stream_token(OTHER, token, now=NOW)
    changes: list[dict[str, object]] = [{"c": "upload:main:*"}, {"e": NOW + 10**6}, {"u": "r"}]
    for change in changes:
        with pytest.raises(StreamTokenForgedError):
            verify_stream_token(SECRET, _reseal(token, change), now=NOW)
    # A forged token is refused as forged even when its claimed expiry is past.
    expired = issue_stream_token(OTHER, CHANNEL, ttl=1, now=NOW - 100)
    with pytest.raises(StreamTokenForgedError):
        verify_stream_token(SECRET, expired, now=NOW)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tf1",
        "tf1..",
        "tf2.e30.AAAA",
        "Bearer tf1.a.b",
        "tf1.²³.x",
        "tf1.e30." + "A" * 42,
        "tf1.e30." + "A" * 43 + "=",
        "tf1.e30.a.b",
        "tf1." + "A" * MAX_TOKEN_CHARS,
        "tf1.\x00\r\n.x",
    ],
)
def test_malformed_tokens_are_malformed(text: str) -> None:
    with pytest.raises(StreamTokenMalformedError):
        verify_stream_token(SECRET, text, now=NOW)


def test_non_strings_are_malformed() -> None:
    for value in (None, b"tf1.a.b", 42, ["tf1"]):
        with pytest.raises(StreamTokenMalformedError):
            verify_stream_token(SECRET, value, now=NOW)


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: "tf1." + b.hex()))
def test_any_text_is_a_typed_refusal(text: str) -> None:
    with pytest.raises(StreamTokenError):
        verify_stream_token(SECRET, text, now=NOW)


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=200
    )
)
def test_base64_shaped_text_is_a_typed_refusal(text: str) -> None:
    with pytest.raises(StreamTokenError):
        verify_stream_token(SECRET, "tf1." + text, now=NOW)


def test_issuing_checks_its_inputs() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        issue_stream_token("short", CHANNEL)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        verify_stream_token("short", "tf1.a.b")
    with pytest.raises(ChannelError):
        issue_stream_token(SECRET, "main:up-1")
    with pytest.raises(ChannelError, match="control"):
        issue_stream_token(SECRET, "upload:main:a\r\nb")
    for ttl in (0, -1, MAX_TOKEN_TTL + 1, True):
        with pytest.raises(ConfigError, match="ttl"):
            issue_stream_token(SECRET, CHANNEL, ttl=ttl)


def test_the_secret_comes_from_the_environment_never_the_file(tmp_path: Path) -> None:
    env = {
        "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
        "TRANSFLOW_PROJECT": "p",
    }
    assert load_config(env=env).stream_secret is None
    config = load_config(env={**env, "TRANSFLOW_STREAM_SECRET": SECRET})
    assert config.stream_secret == SECRET
    assert SECRET not in repr(config)
    with pytest.raises(ConfigError, match=r"TRANSFLOW_STREAM_SECRET.*at least 32 bytes"):
        load_config(env={**env, "TRANSFLOW_STREAM_SECRET": "short"})
    file = tmp_path / "transflow.config.json"
    file.write_text(json.dumps({"project": "p", "sqs": {}, "streamSecret": SECRET}))
    with pytest.raises(ConfigError, match="streamSecret: a secret does not belong"):
        load_config(file, env={})


def test_create_upload_puts_a_token_for_its_channel_on_the_ticket() -> None:
    signer = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    ).client("s3", config=Config(signature_version="s3v4"))

    def upload(**options: Any) -> UploadTicket:
        return create_upload(
            signer, bucket="b", branch="main", template_id="t", files=["a.wav"], **options
        )

    assert upload().stream_token is None
    ticket = upload(user=UserContext("alice"), expires_in=600, stream_secret=SECRET)
    assert ticket.channel == f"upload:main:{ticket.upload_id}"
    data = ticket.to_dict()
    assert data["streamToken"] == ticket.stream_token
    assert ticket.stream_token is not None
    assert ticket.stream_token not in repr(ticket)
    grant = verify_stream_token(SECRET, data["streamToken"])
    assert (grant.channel, grant.user_id) == (ticket.channel, "alice")
    assert ticket.stream_token_expires_at is not None
    # The form's life plus an hour, so the browser can reconnect while the job runs.
    assert (ticket.stream_token_expires_at - ticket.expires_at).total_seconds() == 3600
    short = upload(stream_secret=SECRET, stream_token_ttl=5)
    assert short.stream_token_expires_at is not None
    assert (short.stream_token_expires_at - short.expires_at).total_seconds() == 5 - 3600
