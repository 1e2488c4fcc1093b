"""Webhooks: the status record POSTed to a template's ``webhook_url`` when a job ends.

Every request carries two signatures made with the template's ``webhook_secret``:

- ``X-Transflow-Signature: sha256=<hex>``: HMAC-SHA256 of the body, what existing receivers
  check;
- ``X-Transflow-Timestamp: <unix seconds>`` and
  ``X-Transflow-Timestamped-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 of
  ``"{t}." + body``, so a receiver can refuse a replayed request (:func:`verify`).

Delivery retries network errors, 429 and 5xx with exponential backoff and jitter, never other
4xx (the receiver said no), and never raises: a webhook that cannot be delivered is logged and
the job still counts as done.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

import attrs
from tenacity import RetryError, retry_if_exception_type

from transflow._aws.retry import RetryPolicy
from transflow._version import __version__
from transflow._wire import options
from transflow.errors import ConfigError, WebhookSignatureError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMPED_SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookResult",
    "WebhookSender",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Transflow-Signature"
"""``sha256=<hex HMAC-SHA256 of the body>``."""
TIMESTAMP_HEADER = "X-Transflow-Timestamp"
"""The Unix time (seconds) the request was signed at."""
TIMESTAMPED_SIGNATURE_HEADER = "X-Transflow-Timestamped-Signature"
"""``t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}." + body>``: what `verify` checks, so an
old request cannot be replayed."""


def _hmac(secret: str | bytes, data: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign(secret: str | bytes, body: str | bytes, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers for ``body``, signed at ``timestamp`` (now by default)."""
    data = _bytes(body)
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    stamped = _hmac(secret, str(stamp).encode() + b"." + data)
    return {
        SIGNATURE_HEADER: f"sha256={_hmac(secret, data)}",
        TIMESTAMP_HEADER: str(stamp),
        TIMESTAMPED_SIGNATURE_HEADER: f"t={stamp},v1={stamped}",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(
    secret: str | bytes,
    body: str | bytes,
    headers: Mapping[str, str],
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> None:
    """Check a webhook request; raises :class:`WebhookSignatureError` saying why it is
    refused. Pass the raw body exactly as received (before any JSON parsing).

    The timestamped signature is required and must be at most ``tolerance`` seconds from
    ``now``; the plain body signature, when present, must match too. Comparisons take
    constant time."""
    data = _bytes(body)
    stamped = _header(headers, TIMESTAMPED_SIGNATURE_HEADER)
    if not stamped:
        raise WebhookSignatureError(
            f"the request has no {TIMESTAMPED_SIGNATURE_HEADER} header: it was not sent by "
            "transflow (or a proxy removed it); refuse it"
        )
    parts = dict(item.split("=", 1) for item in stamped.split(",") if "=" in item)
    stamp_text, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp_text.isdigit() or not given:
        raise WebhookSignatureError(
            f"{TIMESTAMPED_SIGNATURE_HEADER} must read 't=<unix seconds>,v1=<hex>'; refuse it"
        )
    expected = _hmac(secret, stamp_text.encode() + b"." + data)
    if not hmac.compare_digest(expected, given):
        raise WebhookSignatureError(
            "the signature does not match the body: the body was changed or the secret is "
            "wrong; refuse the request"
        )
    plain = _header(headers, SIGNATURE_HEADER)
    if plain is not None and not hmac.compare_digest(f"sha256={_hmac(secret, data)}", plain):
        raise WebhookSignatureError(
            f"the {SIGNATURE_HEADER} header does not match the body; refuse the request"
        )
    age = (time.time() if now is None else now) - int(stamp_text)
    if abs(age) > tolerance:
        raise WebhookSignatureError(
            f"the request was signed {age:.0f} s ago, outside the {tolerance:g} s tolerance: "
            "it may be a replay; refuse it (check the clocks if this happens to fresh requests)"
        )


@attrs.frozen
class WebhookResult:
    """How a delivery went: ``delivered`` once a 2xx came back."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class _Retry(Exception):
    pass


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


@attrs.define
class WebhookSender:
    """POSTs JSON bodies to webhook URLs with retries; never raises."""

    timeout: float = attrs.field(default=10.0, validator=options.seconds(strict=True))
    attempts: int = attrs.field(default=4, validator=options.bounded_int(1, 100))
    initial_wait: float = attrs.field(default=0.2, validator=options.seconds())
    max_wait: float = attrs.field(default=5.0, validator=options.seconds())
    opener: Callable[..., object] = attrs.field(
        default=urllib.request.urlopen, repr=False, validator=options.callable_
    )

    def __attrs_post_init__(self) -> None:
        if self.max_wait < self.initial_wait:
            raise ConfigError(
                f"WebhookSender(initial_wait={self.initial_wait!r}, max_wait={self.max_wait!r}) "
                "is refused: max_wait must be at least initial_wait"
            )

    def deliver(self, url: str, body: bytes, secret: str | None = None) -> WebhookResult:
        """POST ``body`` to ``url``, signed with ``secret`` when there is one."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"transflow/{__version__}",
            **(sign(secret, body) if secret else {}),
        }
        tries = 0
        last: WebhookResult = WebhookResult(False, 0)

        def attempt() -> WebhookResult:
            nonlocal tries, last
            tries += 1
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) checked when the template was declared
            try:
                with self.opener(request, timeout=self.timeout) as response:  # type: ignore[attr-defined]
                    response.read()
                    return WebhookResult(True, tries, int(response.status))
            except urllib.error.HTTPError as exc:
                last = WebhookResult(False, tries, exc.code, f"HTTP {exc.code} {exc.reason}")
                if _retryable_status(exc.code):
                    raise _Retry from exc
                return last
            except (urllib.error.URLError, OSError) as exc:
                last = WebhookResult(False, tries, None, f"{type(exc).__name__}: {exc}")
                raise _Retry from exc

        policy = RetryPolicy(self.attempts, self.initial_wait, self.max_wait)
        retrying = policy.retrying(retry_if_exception_type(_Retry), reraise=False)
        try:
            result = retrying(attempt)
        except RetryError:
            result = last
        if result.delivered:
            log.info("webhook %s delivered (HTTP %s, %d attempts)", url, result.status, tries)
        else:
            log.error(
                "webhook %s not delivered after %d attempts: %s; the job's result stands",
                url,
                tries,
                result.error,
            )
        return result
