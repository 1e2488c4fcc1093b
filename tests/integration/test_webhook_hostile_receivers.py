"""Webhook delivery against real local HTTP servers that misbehave: redirects, trickling
answers, broken status lines and bodies. deliver() must fail cleanly, on time, and never raise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import pytest

from transflow import WebhookSender

SECRET = "hook-secret"


@attrs.define
class Misbehaving:
    """What the receiver does with a POST to ``/{mode}``; every request is recorded."""

    base: str = ""
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    stop: threading.Event = attrs.field(factory=threading.Event)
    # Set when a trickle has sent its last byte: the sender should have hung up long before.
    finished: threading.Event = attrs.field(factory=threading.Event)


# Answers whose body runs until the server closes or that say the connection will close:
# http.client hands the socket to the response, so the sender must own it to hang up.
_CLOSING = {
    "http10-trickle-body": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n",
    "close-trickle-body": b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\nConnection: close\r\n\r\n",
    "eof-trickle-body": b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n",
}


@pytest.fixture
def receiver() -> Iterator[Misbehaving]:
    state = Misbehaving()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _trickle(self, data: bytes, pace: float) -> None:
            # One byte every `pace` s: each read succeeds well within the per-read timeout.
            for byte in data:
                if state.stop.wait(pace):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the sender hung up, as it should
                    return
            state.finished.set()

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(("POST", self.path))
            mode = self.path.strip("/")
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", f"{state.base}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif mode in ("elsewhere", "ok"):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif mode == "trickle-headers":
                self._trickle(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: y\r\n" * 10_000, 0.02)
            elif mode == "trickle-body":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                self._trickle(b"x" * 1_000_000, 0.02)
            elif mode in _CLOSING:  # http.client lets go of the socket after these headers
                self.wfile.write(_CLOSING[mode])
                self._trickle(b"x" * 400, 0.02)
                self.close_connection = True
            elif mode == "http10-trickle-headers":
                self._trickle(b"HTTP/1.0 200 OK\r\n" + b"X-Slow: y\r\n" * 400, 0.02)
                self.close_connection = True
            elif mode == "short-body":  # IncompleteRead: promises 100 bytes, sends 10
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                self.close_connection = True
            elif mode == "bad-status":  # BadStatusLine
                self.wfile.write(b"NONSENSE\r\n\r\n")
                self.close_connection = True
            elif mode == "hang-up":  # RemoteDisconnected: no answer at all
                self.close_connection = True
            elif mode == "busy":
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.stop.set()
    server.shutdown()
    server.server_close()


def quick(**overrides: Any) -> WebhookSender:
    settings: dict[str, Any] = {
        "timeout": 5,
        "attempts": 3,
        "initial_wait": 0.001,
        "max_wait": 0.01,
        "deadline": 1.0,
        # The receiver listens on loopback over http: both refused unless allowed.
        "allow_http": True,
        "allowed_networks": ["127.0.0.0/8"],
    }
    return WebhookSender(**{**settings, **overrides})


def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Misbehaving) -> None:
    result = quick().deliver(f"{receiver.base}/redirect", b"{}", SECRET)
    assert (result.delivered, result.attempts, result.status) == (False, 1, 302)
    assert result.error is not None
    assert "do not follow redirects" in result.error
    assert receiver.requests == [("POST", "/redirect")]  # nothing went to /elsewhere


@pytest.mark.parametrize("mode", ["trickle-headers", "trickle-body"])
def test_a_trickling_receiver_cannot_hold_the_worker_past_the_deadline(
    receiver: Misbehaving, mode: str
) -> None:
    started = time.monotonic()
    result = quick(deadline=1.0).deliver(f"{receiver.base}/{mode}", b"{}", SECRET)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"deliver took {elapsed:.1f} s against a 1 s deadline"
    if mode == "trickle-headers":  # no status ever came: a failure, said to be the deadline
        assert not result.delivered
        assert result.error is not None
        assert "deadline" in result.error
    else:  # the status was 200: the body does not matter
        assert (result.delivered, result.status) == (True, 200)


@pytest.mark.parametrize("mode", sorted(_CLOSING))
def test_the_deadline_holds_when_the_receiver_closes_the_connection_and_trickles(
    receiver: Misbehaving, mode: str
) -> None:
    # The trickle lasts 8 s; a 0.5 s deadline must hang up long before it ends.
    result = quick(deadline=0.5).deliver(f"{receiver.base}/{mode}", b"{}", SECRET)
    assert not receiver.finished.is_set(), "deliver() waited for the whole trickle"
    # The status line came: the answer is 200, the slow body does not change it.
    assert (result.delivered, result.status, result.attempts) == (True, 200, 1)


def test_an_http10_receiver_trickling_headers_fails_with_the_deadline(
    receiver: Misbehaving,
) -> None:
    result = quick(deadline=0.5).deliver(f"{receiver.base}/http10-trickle-headers", b"{}", SECRET)
    assert not receiver.finished.is_set(), "deliver() waited for the whole trickle"
    assert not result.delivered
    assert result.error is not None
    assert "deadline" in result.error


def test_an_incomplete_body_after_a_2xx_still_counts_as_delivered(receiver: Misbehaving) -> None:
    result = quick().deliver(f"{receiver.base}/short-body", b"{}", SECRET)
    assert (result.delivered, result.attempts, result.status) == (True, 1, 200)


@pytest.mark.parametrize(("mode", "error"), [("bad-status", "BadStatusLine"), ("hang-up", "")])
def test_broken_answers_are_retried_then_reported_never_raised(
    receiver: Misbehaving, mode: str, error: str
) -> None:
    result = quick(deadline=10).deliver(f"{receiver.base}/{mode}", b"{}", SECRET)
    assert (result.delivered, result.attempts, result.status) == (False, 3, None)
    assert result.error is not None
    assert error in result.error
    assert receiver.requests == [("POST", f"/{mode}")] * 3


def test_the_deadline_bounds_the_retries_too(receiver: Misbehaving) -> None:
    started = time.monotonic()
    sender = quick(attempts=1000, initial_wait=0.05, max_wait=0.05, deadline=0.5)
    result = sender.deliver(f"{receiver.base}/busy", b"{}", SECRET)
    elapsed = time.monotonic() - started
    assert not result.delivered
    # The last attempt either got its 503 or was the one the deadline cut short.
    assert result.status == 503 or "deadline" in (result.error or ""), result
    assert 1 < result.attempts < 1000
    assert elapsed < 3  # 0.5 s deadline; the margin is for a loaded machine


def test_bad_urls_and_unreachable_hosts_are_reported(receiver: Misbehaving) -> None:
    for url in ("ftp://example.test/x", "http:///nohost", "http://127.0.0.1:notaport/x"):
        result = quick(attempts=1).deliver(url, b"{}", SECRET)
        assert not result.delivered, url
        assert result.error
    assert quick().deliver(f"{receiver.base}/ok", b"{}", None).delivered
