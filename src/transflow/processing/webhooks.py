"""Webhooks: the status record POSTed to a template's ``webhook_url`` when a job ends.

Every request carries two signatures made with the template's ``webhook_secret``:

- ``X-Transflow-Signature: sha256=<hex>``: HMAC-SHA256 of the body, what existing receivers
  check;
- ``X-Transflow-Timestamp: <unix seconds>`` and
  ``X-Transflow-Timestamped-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 of
  ``"{t}." + body``, so a receiver can refuse a replayed request (:func:`verify`).

Delivery retries network errors, 429 and 5xx with exponential backoff and jitter, never other
4xx (the receiver said no) nor 3xx (redirects are never followed), stops at a total deadline,
and never raises: a webhook that cannot be delivered is logged and the job still counts as
done.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs
from tenacity import (
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

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


_STAMP = re.compile(r"[0-9]{1,15}", re.ASCII)
_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)


def _header(headers: Mapping[str, str], name: str) -> object:
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
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
    try:
        data = _bytes(body)
    except UnicodeEncodeError as exc:
        raise WebhookSignatureError(
            "the body is text that cannot be UTF-8 (lone surrogates); pass the raw bytes"
        ) from exc
    stamped = _header(headers, TIMESTAMPED_SIGNATURE_HEADER)
    if not isinstance(stamped, str) or not stamped:
        raise WebhookSignatureError(
            f"the request has no {TIMESTAMPED_SIGNATURE_HEADER} header: it was not sent by "
            "transflow (or a proxy removed it); refuse it"
        )
    parts = dict(item.split("=", 1) for item in stamped.split(",") if "=" in item)
    stamp_text, given = parts.get("t", ""), parts.get("v1", "")
    # ASCII only, bounded: "²".isdigit() is true but int() refuses it, and compare_digest
    # raises TypeError for non-ASCII text.
    if not _STAMP.fullmatch(stamp_text) or not _HEX.fullmatch(given):
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
    if plain is not None and (
        not isinstance(plain, str)
        or not plain.isascii()
        or not hmac.compare_digest(f"sha256={_hmac(secret, data)}", plain)
    ):
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


_MAX_RESPONSE_BYTES = 64 * 1024  # the answer is not used: read a little, then hang up


@attrs.frozen
class _Target:
    https: bool
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an absolute http(s) URL")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme == "https", parts.hostname, parts.port, path)

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            context = ssl.create_default_context()
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def _hang_up(connection: http.client.HTTPConnection, fired: threading.Event) -> None:
    # Called by the watchdog at the deadline: shutting the socket down wakes the thread
    # blocked in recv, whatever http.client is in the middle of.
    fired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@attrs.define
class WebhookSender:
    """POSTs JSON bodies to webhook URLs with retries; never raises.

    ``timeout`` bounds each connect and each read; ``deadline`` bounds the whole delivery
    (every attempt and the waits between them), so a receiver that trickles its answer a
    byte at a time cannot hold the worker. Redirects are never followed: a 3xx is a failed
    delivery (a redirect would re-send the signed body somewhere the template did not name).
    Requests go straight to the receiver, without an HTTP proxy.
    """

    timeout: float = attrs.field(default=10.0, validator=options.seconds(strict=True))
    attempts: int = attrs.field(default=4, validator=options.bounded_int(1))
    initial_wait: float = attrs.field(default=0.2, validator=options.seconds())
    max_wait: float = attrs.field(default=5.0, validator=options.seconds())
    deadline: float = attrs.field(default=30.0, validator=options.seconds(strict=True))

    def __attrs_post_init__(self) -> None:
        if self.max_wait < self.initial_wait:
            raise ConfigError(
                f"WebhookSender max_wait must be at least initial_wait, not {self.max_wait!r} "
                f"(initial_wait is {self.initial_wait!r})"
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
        end = time.monotonic() + self.deadline

        def attempt() -> WebhookResult:
            nonlocal tries, last
            tries += 1
            try:
                last = self._post(url, body, headers, tries, end)
            except _Retry as retry:
                last = retry.args[0]
                raise
            except Exception as exc:
                last = WebhookResult(False, tries, None, f"{type(exc).__name__}: {exc}")
            return last

        policy = RetryPolicy(self.attempts, self.initial_wait, self.max_wait)
        retrying = policy.retrying(retry_if_exception_type(_Retry), reraise=False)
        # No wait may start that would end past the deadline.
        retrying = retrying.copy(
            stop=stop_after_attempt(self.attempts) | stop_before_delay(self.deadline)
        )
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

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], tries: int, end: float
    ) -> WebhookResult:
        """One attempt; raises _Retry when another may succeed."""
        target = _Target.parse(url)
        left = end - time.monotonic()
        if left <= 0:
            return WebhookResult(False, tries, None, f"no answer within {self.deadline:g} s")
        connection = target.connection(min(self.timeout, left))
        fired = threading.Event()
        watchdog = threading.Timer(left, _hang_up, (connection, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            if fired.is_set():  # headers cut short by the watchdog: no real answer
                raise TimeoutError("deadline")
            # The status is the answer; a body cut short or too slow does not change it.
            with contextlib.suppress(OSError, http.client.HTTPException):
                response.read(_MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            if fired.is_set():
                return WebhookResult(
                    False,
                    tries,
                    None,
                    f"the receiver did not answer within the {self.deadline:g} s deadline",
                )
            failed = WebhookResult(False, tries, None, f"{type(exc).__name__}: {exc}")
            raise _Retry(failed) from exc
        finally:
            watchdog.cancel()
            connection.close()
        return _judge(int(response.status), response.reason, response.getheader("Location"), tries)


def _judge(status: int, reason: str, location: str | None, tries: int) -> WebhookResult:
    if 200 <= status < 300:
        return WebhookResult(True, tries, status)
    if 300 <= status < 400:
        return WebhookResult(
            False,
            tries,
            status,
            f"HTTP {status} {reason}: webhooks do not follow redirects (to {location!r}); "
            "set webhook_url to the final address",
        )
    result = WebhookResult(False, tries, status, f"HTTP {status} {reason}")
    if _retryable_status(status):
        raise _Retry(result)
    return result
