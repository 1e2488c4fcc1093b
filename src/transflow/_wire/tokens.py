"""Stream tokens: short-lived, signed permission to follow one progress channel.

``create_upload`` issues one per upload; the SSE endpoints check it (``?token=`` or
``Authorization: Bearer``). A token is ``tf1.<payload>.<mac>``: the payload is URL-safe
base64 of compact JSON ``{"c": channel, "u": user id or null, "e": expiry (Unix seconds)}``,
the mac URL-safe base64 of HMAC-SHA256 over ``"transflow-stream-token.tf1." + payload`` with
the stream secret. The version is signed with the rest, so a token cannot be replayed under
another format; the domain prefix keeps a MAC made with the same secret for something else
(a webhook, say) from passing as a token.

The secret may be a list: the first signs, every one verifies, so a secret can be rotated
without cutting live streams (docs/security.md, "Rotating the stream secret"). A secret
must be at least :data:`MIN_SECRET_BYTES` bytes with at least :data:`MIN_SECRET_BITS` bits
of estimated entropy and must not be one shorter piece repeated (:func:`secret_problem`).

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
import math
import re
import time
from collections import Counter
from collections.abc import Sequence

import attrs

from transflow._wire.channels import channel_matches, parse_channel
from transflow._wire.naming import branch_problem
from transflow.errors import (
    ChannelError,
    ConfigError,
    StreamTokenExpiredError,
    StreamTokenForgedError,
    StreamTokenMalformedError,
)

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "ENV_STREAM_SECRET",
    "MAX_CLOCK_SKEW",
    "MAX_TOKEN_TTL",
    "MIN_SECRET_BITS",
    "MIN_SECRET_BYTES",
    "TOKEN_VERSION",
    "StreamGrant",
    "StreamSecret",
    "check_stream_secret",
    "issue_stream_token",
    "secret_problem",
    "verify_stream_token",
]

TOKEN_VERSION = "tf1"  # noqa: S105 - a format tag, not a secret
"""The prefix of every token this version issues and accepts."""
ENV_STREAM_SECRET = "TRANSFLOW_STREAM_SECRET"  # noqa: S105 - the name of a variable
"""The environment variable that holds the stream secret (shared by every server that
issues or checks tokens)."""
MIN_SECRET_BYTES = 32
"""A shorter secret could be guessed offline from one token; 32 random bytes cannot."""
MIN_SECRET_BITS = 80
"""The least estimated entropy a secret may have: its length times the Shannon entropy of
its own byte frequencies. ``"a" * 32`` has 0 bits, ``"ab" * 16`` 32; a 32-character
``secrets.token_hex(16)`` has about 116 and never (in 200,000 draws) under 90, and
``secrets.token_urlsafe(32)`` about 208. Catches typed, padded and placeholder secrets,
not a guessable one that looks random (a password reused from elsewhere, say)."""
MAX_CLOCK_SKEW = 300
"""Seconds the issuing server's clock may run ahead of the checking one's: a token may
expire at most :data:`MAX_TOKEN_TTL` plus this after the checker's now."""
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
_HOW = (
    "generate one with `transflow secret` (or python -c 'import secrets; "
    "print(secrets.token_urlsafe(32))') and set it in "
    f"{ENV_STREAM_SECRET} on every server that issues or checks stream tokens"
)

StreamSecret = str | bytes | Sequence[str | bytes]
"""One secret, or a list of them: the first signs new tokens, every one verifies."""


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


def secret_problem(secret: str | bytes) -> str | None:
    """Why ``secret`` cannot sign stream tokens, or None.

    The rule: at least :data:`MIN_SECRET_BYTES` bytes (UTF-8 for text); at least
    :data:`MIN_SECRET_BITS` bits of estimated entropy (length times the Shannon entropy of
    the secret's own byte frequencies); not one shorter piece repeated
    (``"0123456789abcdef" * 2``)."""
    key = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    if not isinstance(key, bytes):
        return f"a stream secret is text or bytes, not {type(secret).__name__}"
    if len(key) < MIN_SECRET_BYTES:
        return (
            f"the stream secret is {len(key)} bytes; it must be at least {MIN_SECRET_BYTES} bytes"
        )
    bits = _entropy_bits(key)
    if bits < MIN_SECRET_BITS:
        return (
            f"the stream secret has too little variety ({bits:.0f} bits of estimated "
            f"entropy, {len(set(key))} distinct characters; at least {MIN_SECRET_BITS} bits "
            "needed): it looks typed or padded, not random"
        )
    if (key + key).find(key, 1) < len(key):
        return "the stream secret is one shorter piece repeated, not random"
    return None


def _entropy_bits(key: bytes) -> float:
    total = len(key)
    return sum(n * math.log2(total / n) for n in Counter(key).values())


def _keys(secret: object) -> tuple[bytes, ...]:
    """The keys of ``secret`` (one, or a list whose first signs), each checked."""
    many = (
        secret if isinstance(secret, Sequence) and not isinstance(secret, str | bytes) else [secret]
    )
    if not many:
        raise ConfigError(f"the list of stream secrets is empty; {_HOW}")
    keys: list[bytes] = []
    for index, one in enumerate(many):
        problem = secret_problem(one)
        if problem is not None:
            which = f"secret {index + 1} of {len(many)}: " if len(many) > 1 else ""
            raise ConfigError(f"{which}{problem}; {_HOW}")
        keys.append(one.encode("utf-8", "surrogatepass") if isinstance(one, str) else one)
    return tuple(keys)


def check_stream_secret(secret: StreamSecret) -> None:
    """Raise :class:`ConfigError` unless ``secret`` (one, or a list of them) can sign
    tokens: see :func:`secret_problem` for the rule."""
    _keys(secret)


def _clock(now: object) -> float:
    if now is None:
        return time.time()
    if (
        isinstance(now, bool)
        or not isinstance(now, int | float)
        or not math.isfinite(now)
        or now < 0
    ):
        raise ConfigError(
            f"now must be a finite, non-negative number of Unix seconds, not {now!r}; "
            "leave it out to use the clock"
        )
    return float(now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def issue_stream_token(
    secret: StreamSecret,
    channel: str,
    *,
    user_id: str | None = None,
    ttl: int = DEFAULT_TOKEN_TTL,
    now: float | None = None,
) -> str:
    """A token that lets its bearer stream ``channel`` for ``ttl`` seconds.

    ``channel`` is ``upload:{branch}:{uploadId}``, or ``upload:{branch}:*`` for an operator
    token over the whole branch; its branch must be canonical (as
    :func:`~transflow._wire.naming.sanitize_branch` writes it). With a list of secrets, the
    first signs. Raises :class:`ConfigError` for a weak secret or a bad ``ttl`` or ``now``
    and :class:`ChannelError` for a malformed channel."""
    key = _keys(secret)[0]
    branch, _ = parse_channel(channel)
    if _CONTROL.search(channel):
        raise ChannelError(f"channel {channel!r} holds control characters")
    problem = branch_problem(branch)
    if problem is not None:
        raise ChannelError(f"channel {channel[:120]!r}: {problem}")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise ConfigError(f"a stream token's ttl must be 1 to {MAX_TOKEN_TTL} seconds, not {ttl!r}")
    if user_id is not None and not isinstance(user_id, str):
        raise ConfigError(f"user_id must be a string or None, not {type(user_id).__name__}")
    expires = int(_clock(now)) + ttl
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
    secret: StreamSecret, token: object, *, now: float | None = None
) -> StreamGrant:
    """The grant a token carries, once its signature (compared in constant time with every
    secret of the list) and expiry check out.

    Raises :class:`StreamTokenMalformedError` for anything that is not a token of this version
    in its one canonical encoding (including non-ASCII or over-long text),
    :class:`StreamTokenForgedError` when the signature matches no secret or the token claims to
    live longer than :data:`MAX_TOKEN_TTL` (plus :data:`MAX_CLOCK_SKEW`) from now,
    :class:`StreamTokenExpiredError` when it is genuine but too old. Never any other error for
    any token; :class:`ConfigError` for a weak secret or a bad ``now``."""
    keys = _keys(secret)
    clock = _clock(now)
    if not isinstance(token, str) or not token:
        raise StreamTokenMalformedError(
            "no stream token given; pass the token from the upload ticket"
        )
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise StreamTokenMalformedError(
            f"a stream token is ASCII and at most {MAX_TOKEN_CHARS} characters; this is not one"
        )
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise StreamTokenMalformedError(
            f"a stream token reads '{TOKEN_VERSION}.<payload>.<signature>'; this one does not "
            "(ask the host for a fresh token)"
        )
    _, payload, mac_text = parts
    if not _B64URL.fullmatch(payload) or not _B64URL.fullmatch(mac_text):
        raise StreamTokenMalformedError("the stream token holds characters outside URL-safe base64")
    if len(mac_text) != _MAC_CHARS:
        raise StreamTokenMalformedError("the stream token's signature has the wrong length")
    try:
        given = _unb64(mac_text)
    except (binascii.Error, ValueError) as exc:
        raise StreamTokenMalformedError("the stream token's signature is not base64") from exc
    # Base64 of 32 bytes leaves two spare bits in the last character, which the decoder
    # ignores: without this, four spellings of one signature would all verify.
    if _b64(given) != mac_text:
        raise StreamTokenMalformedError("the stream token's signature is not in canonical base64")
    # Every secret is tried (no early exit), so the time taken does not tell which matched.
    matches = [hmac.compare_digest(_mac(key, payload), given) for key in keys]
    if not any(matches):
        raise StreamTokenForgedError(
            "the stream token's signature does not match: it was changed, or signed with "
            "another secret; refuse it"
        )
    grant = _grant(payload)
    if grant.expires_at > clock + MAX_TOKEN_TTL + MAX_CLOCK_SKEW:
        # Only a leaked secret (or a badly wrong clock) makes such a token: refuse it so a
        # leak cannot mint a stream pass that outlives the rotation of the secret.
        raise StreamTokenForgedError(
            f"the stream token for {grant.channel} claims to live longer than the "
            f"{MAX_TOKEN_TTL} seconds any token may; refuse it (and check the issuer's clock)"
        )
    if grant.expires_at <= clock:
        raise StreamTokenExpiredError(
            f"the stream token for {grant.channel} expired; ask the host for a fresh one"
        )
    return grant


def _grant(payload: str) -> StreamGrant:
    # Signed by us, so well formed unless the secret leaked; checked anyway, so a bug or a
    # leak still yields a typed error rather than a KeyError.
    try:
        data = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise StreamTokenMalformedError("the stream token's payload is not JSON") from exc
    if not isinstance(data, dict):
        raise StreamTokenMalformedError("the stream token's payload is not an object")
    channel, user, expires = data.get("c"), data.get("u"), data.get("e")
    if (
        not isinstance(channel, str)
        or not (user is None or isinstance(user, str))
        or isinstance(expires, bool)
        or not isinstance(expires, int)
    ):
        raise StreamTokenMalformedError("the stream token's payload lacks a channel or an expiry")
    return StreamGrant(channel, user, expires)
