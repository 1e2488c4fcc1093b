"""Webhooks: the status record POSTed to a template's ``webhook_url`` when a job ends.

Every request carries two signatures made with the template's ``webhook_secret``:

- ``X-Transflow-Signature: sha256=<hex>``: HMAC-SHA256 of the body, what existing receivers
  check;
- ``X-Transflow-Timestamp: <unix seconds>`` and
  ``X-Transflow-Timestamped-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 of
  ``"{t}." + body``, so a receiver can refuse a replayed request (:func:`verify`).

Every request also carries ``X-Transflow-Delivery-Id``, the same for every delivery of one
outcome of one job (:func:`~transflow.processing.status.webhook_delivery_id`). Webhooks are
at least once: a job redelivered after its completion record was written (its process died,
or its message's delete failed) posts again, since it cannot know whether the first went,
with the same id, on which receivers deduplicate.

Delivery retries network errors, 429 and 5xx with exponential backoff and jitter, never other
4xx (the receiver said no) nor 3xx (redirects are never followed), stops at a total deadline,
and never raises: a webhook that cannot be delivered is logged and the job still counts as
done. It goes over https to public addresses only unless the sender's options allow more
(:mod:`transflow.processing.webhook_destinations`).
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
from collections.abc import Collection, Mapping

import attrs

from transflow._aws.emf import emit
from transflow._aws.retry import RetryPolicy
from transflow._version import __version__
from transflow._wire import validators
from transflow.errors import ConfigError, WebhookDestinationError, WebhookSignatureError
from transflow.processing.webhook_destinations import (
    Address,
    DestinationPolicy,
    Network,
    Resolver,
    WebhookTarget,
    literal_address,
    system_resolver,
)

__all__ = [
    "DELIVERY_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMPED_SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookResult",
    "WebhookSender",
    "WebhookStats",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Transflow-Signature"
"""``sha256=<hex HMAC-SHA256 of the body>``."""
TIMESTAMP_HEADER = "X-Transflow-Timestamp"
"""The Unix time (seconds) the request was signed at."""
DELIVERY_ID_HEADER = "X-Transflow-Delivery-Id"
"""The same for every delivery of one outcome of one job (a redelivered job posts its
webhook again): what receivers deduplicate on. Not signed, but recomputable from the signed
body (:func:`~transflow.processing.status.webhook_delivery_id`)."""
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
    """How a delivery went: ``delivered`` once a 2xx came back; ``refused`` when the
    destination was refused (:class:`~transflow.errors.WebhookDestinationError`) and
    nothing was sent."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    refused: bool = False


class _Retry(Exception):
    pass


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


_MAX_RESPONSE_BYTES = 64 * 1024  # the answer is not used: read a little, then hang up


@attrs.define
class WebhookStats:
    """What a sender has done since it was made: deliveries that got a 2xx, that did not,
    and (among those) that were refused before anything was sent."""

    delivered: int = 0
    failed: int = 0
    refused: int = 0


class _Line:
    """The socket of one attempt, which the watchdog shuts at the deadline. The sender owns
    it: http.client drops its own reference when the receiver says it will close the
    connection (HTTP/1.0, ``Connection: close``), and reads from it after that."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def hold(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sock = sock
            if self.fired.is_set():  # the deadline passed while it was being made
                self._shut()
        return sock

    def hang_up(self) -> None:
        # Called by the watchdog: shutting the socket down wakes the thread blocked in recv,
        # whatever http.client is in the middle of.
        with self._lock:
            self.fired.set()
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
            self._sock = None


class _PinnedConnection(http.client.HTTPConnection):
    """http.client over a socket already connected to a checked address: it never resolves
    the host nor connects by itself; ``host`` only names the Host header."""

    def __init__(self, target: WebhookTarget, sock: socket.socket) -> None:
        super().__init__(target.host, target.port)
        self.default_port = 443 if target.https else 80  # the Host header omits it then
        self._pinned = sock

    def connect(self) -> None:
        self.sock = self._pinned


def _connect(
    target: WebhookTarget,
    addresses: tuple[Address, ...],
    timeout: float,
    line: _Line,
    context: ssl.SSLContext | None,
) -> socket.socket:
    """A socket connected to the first of ``addresses`` that answers (TLS for https, the
    certificate checked against the URL's host)."""
    failure: OSError = OSError(f"no address of {target.host} could be reached")
    for ip in addresses:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = line.hold(socket.socket(family, socket.SOCK_STREAM))
        sock.settimeout(timeout)
        try:
            sock.connect((str(ip), target.port))
        except OSError as exc:
            failure = exc
            line.close()
            if line.fired.is_set():
                break
            continue
        if not target.https:
            return sock
        context = context or ssl.create_default_context()
        wrapped = context.wrap_socket(
            sock, server_hostname=target.host, do_handshake_on_connect=False
        )
        line.hold(wrapped)
        wrapped.do_handshake()
        return wrapped
    raise failure


@attrs.define
class WebhookSender:
    """POSTs JSON bodies to webhook URLs with retries; never raises.

    ``timeout`` bounds each connect and each read; ``deadline`` bounds the whole delivery
    (every attempt and the waits between them), whatever the receiver does: it may trickle
    its answer a byte at a time, speak HTTP/1.0 or close the connection after it, the
    sender shuts its own socket at the deadline. Redirects are never followed: a 3xx is a
    failed delivery (a redirect would re-send the signed body somewhere the template did not
    name). Requests go straight to the receiver, without an HTTP proxy.

    Destinations (see :mod:`transflow.processing.webhook_destinations`): https only unless
    ``allow_http``; no loopback, private, link-local, shared, multicast, reserved or cloud
    metadata address, checked on every address the host resolves to, and the connection
    goes to one of exactly those addresses (with the URL's host in the Host header, SNI and
    certificate check), so DNS cannot swap the address between check and connect.
    ``allowed_hosts`` (exact host names) and ``allowed_networks`` (``"10.1.0.0/16"``) lift
    the address refusal for receivers a team trusts; metadata addresses stay refused. A
    refused URL is a :class:`~transflow.errors.WebhookDestinationError` from
    :meth:`check_url` (the processor calls it for every template when it is made) and a
    failed, unretried delivery from :meth:`deliver`. ``resolver`` turns a host name into
    addresses (the system resolver by default); ``ssl_context`` sets what TLS trusts (the
    system's CAs by default: pass one that trusts your private CA for an internal receiver).
    """

    timeout: float = attrs.field(default=10.0, validator=validators.seconds(strict=True))
    attempts: int = attrs.field(default=4, validator=validators.bounded_int(1))
    initial_wait: float = attrs.field(default=0.2, validator=validators.seconds())
    max_wait: float = attrs.field(default=5.0, validator=validators.seconds())
    deadline: float = attrs.field(default=30.0, validator=validators.seconds(strict=True))
    allow_http: bool = attrs.field(default=False, kw_only=True)
    allowed_hosts: Collection[str] = attrs.field(default=(), kw_only=True)
    allowed_networks: Collection[str | Network] = attrs.field(default=(), kw_only=True)
    resolver: Resolver = attrs.field(
        default=system_resolver, kw_only=True, validator=validators.callable_, repr=False
    )
    ssl_context: ssl.SSLContext | None = attrs.field(
        default=None,
        kw_only=True,
        validator=validators.optional(validators.instance_of(ssl.SSLContext)),
        repr=False,
    )
    _policy: DestinationPolicy = attrs.field(init=False, repr=False)
    _stats: WebhookStats = attrs.field(init=False, factory=WebhookStats, repr=False)
    _stats_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.max_wait < self.initial_wait:
            raise ConfigError(
                f"WebhookSender max_wait must be at least initial_wait, not {self.max_wait!r} "
                f"(initial_wait is {self.initial_wait!r})"
            )
        self._policy = DestinationPolicy.build(
            "WebhookSender", self.allow_http, self.allowed_hosts, self.allowed_networks
        )

    def check_url(self, url: str) -> None:
        """Raise :class:`~transflow.errors.WebhookDestinationError` when what ``url`` alone
        tells is refused: not https (without ``allow_http``), a literal address that is not
        public and not allowed, or ``localhost``. Needs no network: host names are checked
        again, on the addresses they resolve to, at each delivery."""
        self._policy.parse(url)

    def resolve(self, url: str) -> tuple[Address, ...]:
        """The addresses a delivery to ``url`` may connect to, every one of them checked;
        raises :class:`~transflow.errors.WebhookDestinationError` (or ``OSError`` when the
        host does not resolve)."""
        return self._policy.addresses(self._policy.parse(url), self.resolver)

    def stats(self) -> WebhookStats:
        """A copy of the counters."""
        with self._stats_lock:
            return attrs.evolve(self._stats)

    def deliver(
        self,
        url: str,
        body: bytes,
        secret: str | None = None,
        *,
        delivery_id: str | None = None,
    ) -> WebhookResult:
        """POST ``body`` to ``url``, signed with ``secret`` when there is one, with
        ``delivery_id`` in :data:`DELIVERY_ID_HEADER` when given."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"transflow/{__version__}",
            **(sign(secret, body) if secret else {}),
            **({DELIVERY_ID_HEADER: delivery_id} if delivery_id else {}),
        }
        tries = 0
        last: WebhookResult = WebhookResult(False, 0)
        end = time.monotonic() + self.deadline
        try:
            target = self._policy.parse(url)
        except WebhookDestinationError as refused:
            return self._report(url, WebhookResult(False, 0, error=str(refused), refused=True))

        def attempt() -> WebhookResult:
            nonlocal tries, last
            tries += 1
            try:
                last = self._post(target, body, headers, tries, end)
            except _Retry as retry:
                last = retry.args[0]
                raise
            except WebhookDestinationError as refused:  # never retried: it would be again
                last = WebhookResult(False, tries, error=str(refused), refused=True)
            except Exception as exc:
                last = WebhookResult(False, tries, None, f"{type(exc).__name__}: {exc}")
            return last

        policy = RetryPolicy(self.attempts, self.initial_wait, self.max_wait)
        # tenacity loads with the first webhook, not with the processor's import.
        from tenacity import (  # noqa: PLC0415
            RetryError,
            retry_if_exception_type,
            stop_after_attempt,
            stop_before_delay,
        )

        retrying = policy.retrying(retry_if_exception_type(_Retry), reraise=False)
        # No wait may start that would end past the deadline.
        retrying = retrying.copy(
            stop=stop_after_attempt(self.attempts) | stop_before_delay(self.deadline)
        )
        try:
            result = retrying(attempt)
        except RetryError:
            result = last
        return self._report(url, result)

    def _report(self, url: str, result: WebhookResult) -> WebhookResult:
        """Log the outcome once and count it (here and as a CloudWatch metric)."""
        with self._stats_lock:
            if result.delivered:
                self._stats.delivered += 1
            else:
                self._stats.failed += 1
                self._stats.refused += result.refused
        if result.delivered:
            log.info(
                "webhook %s delivered (HTTP %s, %d attempts)", url, result.status, result.attempts
            )
            metrics = {"WebhooksDelivered": (1.0, "Count")}
        elif result.refused:
            log.error("webhook not sent: %s; the job's result stands", result.error)
            metrics = {"WebhooksFailed": (1.0, "Count"), "WebhooksRefused": (1.0, "Count")}
        else:
            log.error(
                "webhook %s not delivered after %d attempts: %s; the job's result stands",
                url,
                result.attempts,
                result.error,
            )
            metrics = {"WebhooksFailed": (1.0, "Count")}
        emit(metrics, {"Component": "webhooks"})
        return result

    def _addresses(self, target: WebhookTarget, end: float, line: _Line) -> tuple[Address, ...]:
        """The checked addresses of ``target``, resolved within the deadline: the system
        resolver has no deadline of its own, so it runs on a thread that is left behind
        (to finish by its own timeouts) when the deadline comes first."""
        if literal_address(target.host) is not None:
            return self._policy.addresses(target, self.resolver)
        outcome: list[tuple[Address, ...] | BaseException] = []
        done = threading.Event()

        def resolve() -> None:
            try:
                outcome.append(self._policy.addresses(target, self.resolver))
            except BaseException as exc:  # handed to the caller below
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=resolve, name="webhook-resolve", daemon=True).start()
        if not done.wait(max(0.0, end - time.monotonic())):
            line.hang_up()  # the attempt is over: reported as the deadline
            raise TimeoutError(f"{target.host} did not resolve within the deadline")
        found = outcome[0]
        if isinstance(found, BaseException):
            raise found
        return found

    def _post(
        self,
        target: WebhookTarget,
        body: bytes,
        headers: dict[str, str],
        tries: int,
        end: float,
    ) -> WebhookResult:
        """One attempt; raises _Retry when another may succeed."""
        left = end - time.monotonic()
        if left <= 0:
            return WebhookResult(False, tries, None, f"no answer within {self.deadline:g} s")
        line = _Line()
        watchdog = threading.Timer(left, line.hang_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            # Resolved once per attempt and checked; the socket goes to a checked address.
            addresses = self._addresses(target, end, line)
            sock = _connect(target, addresses, min(self.timeout, left), line, self.ssl_context)
            connection = _PinnedConnection(target, sock)
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            if line.fired.is_set():  # headers cut short by the watchdog: no real answer
                raise TimeoutError("deadline")
            # The status is the answer; a body cut short or too slow does not change it.
            with contextlib.suppress(OSError, http.client.HTTPException):
                response.read(_MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            if line.fired.is_set():
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
            line.close()
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
