"""Stream tokens after the adversarial pass of issue 21: one encoding per token, a lifetime
bound at verification, secrets with variety, rotation lists, typed errors for any clock."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import secrets
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from transflow import (
    ConfigError,
    StreamTokenError,
    StreamTokenForgedError,
    StreamTokenMalformedError,
    TransflowConfig,
    issue_stream_token,
    load_config,
    verify_stream_token,
)
from transflow._wire.tokens import (
    MAX_CLOCK_SKEW,
    MAX_TOKEN_TTL,
    check_stream_secret,
    secret_problem,
)
from transflow.cli.app import main
from transflow.cli.local import local_environment
from transflow.streaming.apps import _Access

SECRET = "Zr4nTq9xW2bLkVp8sYc3Hd6JfM0aGe1uQo5iNt7R"
NEW = "pQ8vX3mK9wL2cR7tY4nB6hJ1dF5sG0zAeU_-iOqW"
NOW = 1_800_000_000
CHANNEL = "upload:main:up-1"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TEN_YEARS = 10 * 365 * 86_400
ENV = {
    "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
    "TRANSFLOW_PROJECT": "p",
}

# Distinct strong secrets: 64 hex digits of SHA-256 of any integer.
strong = st.integers().map(lambda n: hashlib.sha256(str(n).encode()).hexdigest())


def _spellings_of_last_character(token: str) -> list[str]:
    """Every other token whose MAC decodes to the same 32 bytes (the two spare bits)."""
    head, last = token[:-1], token[-1]
    base = B64.index(last) & ~0b11
    return [head + B64[base + spare] for spare in range(4) if B64[base + spare] != last]


def test_only_the_canonical_encoding_of_the_signature_verifies() -> None:
    token = issue_stream_token(SECRET, CHANNEL, ttl=60, now=NOW)
    others = _spellings_of_last_character(token)
    assert len(others) == 3
    for other in others:
        mac = other.rsplit(".", 1)[1]
        assert base64.urlsafe_b64decode(mac + "=") == base64.urlsafe_b64decode(
            token.rsplit(".", 1)[1] + "="
        )
        with pytest.raises(StreamTokenMalformedError, match="canonical"):
            verify_stream_token(SECRET, other, now=NOW)
    assert verify_stream_token(SECRET, token, now=NOW).channel == CHANNEL


def test_a_genuine_token_living_ten_years_is_refused() -> None:
    far = issue_stream_token(SECRET, CHANNEL, ttl=60, now=NOW + TEN_YEARS)
    with pytest.raises(StreamTokenForgedError, match="longer than"):
        verify_stream_token(SECRET, far, now=NOW)
    # The longest token issued now verifies, and so does one from a clock a little ahead.
    longest = issue_stream_token(SECRET, CHANNEL, ttl=MAX_TOKEN_TTL, now=NOW)
    assert verify_stream_token(SECRET, longest, now=NOW).expires_at == NOW + MAX_TOKEN_TTL
    ahead = issue_stream_token(SECRET, CHANNEL, ttl=MAX_TOKEN_TTL, now=NOW + MAX_CLOCK_SKEW)
    verify_stream_token(SECRET, ahead, now=NOW)
    beyond = issue_stream_token(SECRET, CHANNEL, ttl=MAX_TOKEN_TTL, now=NOW + MAX_CLOCK_SKEW + 1)
    with pytest.raises(StreamTokenForgedError):
        verify_stream_token(SECRET, beyond, now=NOW)


DEGENERATE = ["a" * 32, " " * 32, "0" * 64, "ab" * 16, "0123456789abcdef" * 2, "abcdefgh" * 4]


@pytest.mark.parametrize("weak", DEGENERATE)
def test_degenerate_secrets_are_refused_everywhere(weak: str) -> None:
    assert secret_problem(weak) is not None
    advice = r"transflow secret.*token_urlsafe\(32\)"
    with pytest.raises(ConfigError, match=advice):
        issue_stream_token(weak, CHANNEL)
    with pytest.raises(ConfigError, match=advice):
        verify_stream_token(weak, "tf1.a.b")
    with pytest.raises(ConfigError, match=advice):
        check_stream_secret([SECRET, weak])
    with pytest.raises(ConfigError, match="TRANSFLOW_STREAM_SECRET"):
        TransflowConfig(project="p", stream_secret=weak)
    with pytest.raises(ConfigError, match="TRANSFLOW_STREAM_SECRET"):
        load_config(env={**ENV, "TRANSFLOW_STREAM_SECRET": weak})
    with pytest.raises(ConfigError, match="secret 2 of 2"):
        load_config(env={**ENV, "TRANSFLOW_STREAM_SECRET": f"{SECRET},{weak}"})


def test_generated_secrets_always_pass() -> None:
    # Seeded, so the test is the same every run; 2,000 of each shape transflow recommends.
    rng = random.Random(21)
    for _ in range(2000):
        raw = rng.randbytes(32)
        for secret in (
            base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),  # token_urlsafe(32)
            raw.hex(),  # token_hex(32)
            raw[:16].hex(),  # token_hex(16): the shortest that is long enough
            raw,
        ):
            assert secret_problem(secret) is None, secret


def test_transflow_secret_and_local_print_good_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["secret"]) == 0
    printed = capsys.readouterr().out.strip()
    assert secret_problem(printed) is None
    assert "," not in printed
    assert (
        secret_problem(local_environment("http://127.0.0.1:1")["TRANSFLOW_STREAM_SECRET"]) is None
    )

    monkeypatch.setenv("TRANSFLOW_STREAM_SECRET", SECRET)
    assert main(["secret", "--rotate"]) == 0
    steps = [line.split("=", 1)[1] for line in capsys.readouterr().out.splitlines() if "=" in line]
    fresh = steps[2]
    assert steps == [f"{SECRET},{fresh}", f"{fresh},{SECRET}", fresh]
    for step in steps:
        load_config(env={**ENV, "TRANSFLOW_STREAM_SECRET": step})


def test_rotation_keeps_live_streams() -> None:
    old_token = issue_stream_token(SECRET, CHANNEL, ttl=600, now=NOW)
    # Step 1: every server verifies both, still signing with the old secret.
    step1 = load_config(env={**ENV, "TRANSFLOW_STREAM_SECRET": f"{SECRET}, {NEW}"})
    assert step1.stream_secrets == (SECRET, NEW)
    assert issue_stream_token(step1.stream_secret or "", CHANNEL, now=NOW) == issue_stream_token(
        SECRET, CHANNEL, now=NOW
    )
    # Step 2: the new secret signs; tokens of either verify.
    step2 = TransflowConfig(project="p", stream_secret=[NEW, SECRET])
    assert step2.stream_secret == (NEW, SECRET)
    assert step2.stream_secret is not None
    new_token = issue_stream_token(step2.stream_secret, CHANNEL, now=NOW)
    for token in (old_token, new_token):
        assert verify_stream_token(step2.stream_secret, token, now=NOW).channel == CHANNEL
    # The SSE apps take the list as it is (on the real clock).
    access = _Access.build("app", step2.stream_secret, None, False)
    for signer in (SECRET, NEW):
        assert access.refusal(None, CHANNEL, issue_stream_token(signer, CHANNEL)) is None
    with pytest.raises(StreamTokenForgedError):
        verify_stream_token(SECRET, new_token, now=NOW)
    # Step 3: the old secret is gone, and so are its tokens.
    with pytest.raises(StreamTokenForgedError):
        verify_stream_token(NEW, old_token, now=NOW)
    with pytest.raises(ConfigError, match="empty"):
        check_stream_secret([])


@given(st.lists(strong, min_size=1, max_size=4, unique=True), st.data())
def test_a_token_signed_with_any_listed_secret_verifies(keys: list[str], data: Any) -> None:
    signer = data.draw(st.sampled_from(keys))
    token = issue_stream_token(signer, CHANNEL, ttl=60, now=NOW)
    assert verify_stream_token(keys, token, now=NOW).channel == CHANNEL
    assert verify_stream_token(tuple(keys), token, now=NOW).channel == CHANNEL
    others = [k for k in keys if k != signer]
    if others:
        with pytest.raises(StreamTokenForgedError):
            verify_stream_token(others, token, now=NOW)


def _mutations() -> st.SearchStrategy[Any]:
    token = issue_stream_token(SECRET, CHANNEL, user_id="alice", ttl=600, now=NOW)
    raw = token.encode()
    flip = st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)).map(
        lambda p: bytes(b ^ p[1] if i == p[0] else b for i, b in enumerate(raw)).decode("latin-1")
    )
    swap = st.tuples(st.integers(0, len(token) - 1), st.sampled_from(B64 + ".=")).map(
        lambda p: token[: p[0]] + p[1] + token[p[0] + 1 :]
    )
    cut = st.integers(0, len(token) - 1).map(lambda n: token[:n])
    cut_inside = st.integers(0, len(token) - 1).map(lambda n: token[:n] + token[n + 1 :])
    padded = st.sampled_from(["=", "==", "\n", " ", "."]).map(lambda tail: token + tail)
    spelled = st.sampled_from(_spellings_of_last_character(token))
    return st.one_of(flip, swap, cut, cut_inside, padded, spelled, st.just(token.upper()))


GENUINE = issue_stream_token(SECRET, CHANNEL, user_id="alice", ttl=600, now=NOW)


@given(_mutations())
def test_no_changed_token_verifies(changed: str) -> None:
    assume(changed != GENUINE)
    with pytest.raises(StreamTokenError):
        verify_stream_token([NEW, SECRET], changed, now=NOW)


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf, -1, True, "1800000000"])
def test_a_bad_clock_is_a_typed_error(now: Any) -> None:
    with pytest.raises(ConfigError, match="now must be"):
        issue_stream_token(SECRET, CHANNEL, now=now)
    with pytest.raises(ConfigError, match="now must be"):
        verify_stream_token(SECRET, GENUINE, now=now)


@pytest.mark.parametrize("ttl", [math.nan, math.inf, -5, 0, 2.5, MAX_TOKEN_TTL + 1])
def test_a_bad_ttl_is_a_typed_error(ttl: Any) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        issue_stream_token(SECRET, CHANNEL, ttl=ttl, now=NOW)


def test_the_advice_s_own_recipe_passes() -> None:
    assert secret_problem(secrets.token_urlsafe(32)) is None
