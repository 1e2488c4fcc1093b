"""A real HTTP server taking webhooks on loopback, for the tests that post to one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.define
class Receiver:
    """What a receiver got, in order, answering with scripted status codes (200 once they
    run out)."""

    statuses: list[int] = attrs.field(factory=list)
    received: list[tuple[bytes, dict[str, str]]] = attrs.field(factory=list)
    url: str = ""


@contextmanager
def webhook_receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    """A :class:`Receiver` listening on ``http://127.0.0.1:{port}/hook`` while the block runs."""
    state = Receiver(list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((body, dict(self.headers.items())))
            code = state.statuses.pop(0) if state.statuses else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
