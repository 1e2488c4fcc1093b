"""Stream tokens: short-lived, signed permission to follow one progress channel.

``create_upload`` issues one per upload; the SSE endpoints check it (``?token=`` or
``Authorization: Bearer``). A token is ``tf1.<payload>.<mac>``: the payload is URL-safe
base64 of compact JSON ``{"c": channel, "u": user id or null, "e": expiry (Unix seconds)}``,
the mac URL-safe base64 of HMAC-SHA256 over ``"transflow-stream-token.tf1." + payload`` with
the stream secret. The version is signed with the rest, so a token cannot be replayed under
another format; the domain prefix keeps a MAC made with the same secret for something else
(a webhook, say) from passing as a token.

A token for ``upload:{branch}:*`` is an operator token: it covers the whole branch. Issue
those only to operators.

Pure: no I/O, no clock but the one passed in (``time.time`` by default).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time

import attrs

from transflow._wire.channels import channel_matches, parse_channel
from transflow.errors import (
    ChannelError,
    ConfigError,
    StreamTokenExpired,
    StreamTokenForged,
    StreamTokenMalformed,
)

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "ENV_STREAM_SECRET",
    "MAX_TOKEN_TTL",
    "MIN_SECRET_BYTES",
    "TOKEN_VERSION",
    "StreamGrant",
    "check_stream_secret",
    "issue_stream_token",
    "verify_stream_token",
]

TOKEN_VERSION = "tf1"  # noqa: S105 - a format tag, not a secret
"""The prefix of every token this version issues and accepts."""
ENV_STREAM_SECRET = "TRANSFLOW_STREAM_SECRET"  # noqa: S105 - the name of a variable
"""The environment variable that holds the stream secret (shared by every server that
issues or checks tokens)."""
MIN_SECRET_BYTES = 32
"""A shorter secret could be guessed offline from one token; 32 random bytes cannot."""
DEFAULT_TOKEN_TTL = 3600
"""Seconds a token lives unless told otherwise."""
MAX_TOKEN_TTL = 7 * 24 * 3600
"""The longest a token may live: as long as a presigned upload can."""
MAX_TOKEN_CHARS = 2048
"""Longer text is refused before any decoding (a channel and a user id fit well within)."""

_DOMAIN = f"transflow-stream-token.{TOKEN_VERSION}.".encode()
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAC_CHARS = 43  # unpadded base64 of 32 bytes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@attrs.frozen
class StreamGrant:
    """What a verified token allows: ``channel`` (an upload's, or a branch pattern for an
    operator), for ``user_id``, until ``expires_at`` (Unix seconds)."""

    channel: str
    user_id: str | None
    expires_at: int

    @property
    def is_operator(self) -> bool:
        """Whether the token covers a whole branch (``upload:{branch}:*``)."""
        return self.channel.endswith(":*")

    def allows(self, channel: str) -> bool:
        """Whether this grant covers ``channel``: the same channel, or any channel (and the
        pattern itself) of the branch an operator token names."""
        if self.is_operator:
            return channel == self.channel or channel_matches(self.channel, channel)
        return channel == self.channel


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(key, bytes) or len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the stream secret must be at least {MIN_SECRET_BYTES} bytes; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))' and set it in "
            f"{ENV_STREAM_SECRET} on every server that issues or checks stream tokens"
        )
    return key


def check_stream_secret(secret: str | bytes) -> None:
    """Raise :class:`ConfigError` unless ``secret`` is long enough to sign tokens."""
    _key(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def issue_stream_token(
    secret: str | bytes,
    channel: str,
    *,
    user_id: str | None = None,
    ttl: int = DEFAULT_TOKEN_TTL,
    now: float | None = None,
) -> str:
    """A token that lets its bearer stream ``channel`` for ``ttl`` seconds.

    ``channel`` is ``upload:{branch}:{uploadId}``, or ``upload:{branch}:*`` for an operator
    token over the whole branch. Raises :class:`ConfigError` for a short secret and
    :class:`ChannelError` for a malformed channel."""
    key = _key(secret)
    parse_channel(channel)
    if _CONTROL.search(channel):
        raise ChannelError(f"channel {channel!r} holds control characters")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise ConfigError(f"a stream token's ttl must be 1 to {MAX_TOKEN_TTL} seconds, not {ttl!r}")
    if user_id is not None and not isinstance(user_id, str):
        raise ConfigError(f"user_id must be a string or None, not {type(user_id).__name__}")
    expires = int(time.time() if now is None else now) + ttl
    data = {"c": channel, "u": user_id, "e": expires}
    payload = _b64(json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
    token = f"{TOKEN_VERSION}.{payload}.{_b64(_mac(key, payload))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ConfigError(
            f"the token for {channel!r} would be {len(token)} characters, over "
            f"{MAX_TOKEN_CHARS}: shorten the user id"
        )
    return token


def verify_stream_token(
    secret: str | bytes, token: object, *, now: float | None = None
) -> StreamGrant:
    """The grant a token carries, once its signature (compared in constant time) and expiry
    check out.

    Raises :class:`StreamTokenMalformed` for anything that is not a token of this version
    (including non-ASCII or over-long text), :class:`StreamTokenForged` when the signature
    does not match, :class:`StreamTokenExpired` when it is genuine but too old. Never any
    other error for any input."""
    key = _key(secret)
    if not isinstance(token, str) or not token:
        raise StreamTokenMalformed("no stream token given; pass the token from the upload ticket")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise StreamTokenMalformed(
            f"a stream token is ASCII and at most {MAX_TOKEN_CHARS} characters; this is not one"
        )
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise StreamTokenMalformed(
            f"a stream token reads '{TOKEN_VERSION}.<payload>.<signature>'; this one does not "
            "(ask the host for a fresh token)"
        )
    _, payload, mac_text = parts
    if not _B64URL.fullmatch(payload) or not _B64URL.fullmatch(mac_text):
        raise StreamTokenMalformed("the stream token holds characters outside URL-safe base64")
    if len(mac_text) != _MAC_CHARS:
        raise StreamTokenMalformed("the stream token's signature has the wrong length")
    try:
        given = _unb64(mac_text)
    except (binascii.Error, ValueError) as exc:
        raise StreamTokenMalformed("the stream token's signature is not base64") from exc
    if not hmac.compare_digest(_mac(key, payload), given):
        raise StreamTokenForged(
            "the stream token's signature does not match: it was changed, or signed with "
            "another secret; refuse it"
        )
    grant = _grant(payload)
    if grant.expires_at <= (time.time() if now is None else now):
        raise StreamTokenExpired(
            f"the stream token for {grant.channel} expired; ask the host for a fresh one"
        )
    return grant


def _grant(payload: str) -> StreamGrant:
    # Signed by us, so well formed unless the secret leaked; checked anyway, so a bug or a
    # leak still yields a typed error rather than a KeyError.
    try:
        data = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise StreamTokenMalformed("the stream token's payload is not JSON") from exc
    if not isinstance(data, dict):
        raise StreamTokenMalformed("the stream token's payload is not an object")
    channel, user, expires = data.get("c"), data.get("u"), data.get("e")
    if (
        not isinstance(channel, str)
        or not (user is None or isinstance(user, str))
        or isinstance(expires, bool)
        or not isinstance(expires, int)
    ):
        raise StreamTokenMalformed("the stream token's payload lacks a channel or an expiry")
    return StreamGrant(channel, user, expires)
