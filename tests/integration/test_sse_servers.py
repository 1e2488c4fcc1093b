"""The SSE apps on real servers (werkzeug for WSGI, uvicorn for ASGI), read by a real HTTP
client and parsed by the spec parser in tests/streaming_support.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.streaming_support import (
    SseClient,
    SseEvent,
    asgi_server,
    fifo_queue,
    publish,
    wait_until,
    wsgi_server,
)
from transflow import ProgressEvent, ProgressHub
from transflow.streaming.sse import asgi_app, encode, wsgi_app

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)
TRICKY = "line one\r\nline two\rline three\nend"

Server = Callable[[Any], AbstractContextManager[str]]
KINDS: list[tuple[str, Server, Callable[..., Any]]] = [
    ("wsgi", wsgi_server, wsgi_app),
    ("asgi", asgi_server, asgi_app),
]


def ev(upload: str, seq: int, **fields: Any) -> ProgressEvent:
    kind = fields.pop("type", "progress")
    return ProgressEvent.create(
        kind, upload_id=upload, branch="main", timestamp=T0, seq=seq, **fields
    )


def progress(events: list[SseEvent]) -> list[ProgressEvent]:
    return [ProgressEvent.from_json(e.data) for e in events if e.type == "message"]


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_events_over_a_real_server_with_resume(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    url = fifo_queue(sqs, f"progress-{kind}.fifo")
    sent = [
        ev("abc", 1, type="start", template_id="audio"),
        ev("abc", 2, type="step:start", step="transcode", message=TRICKY),
        *[ev("abc", s, step="transcode", percent=s) for s in range(3, 6)],
    ]

    def authorize(_request: Any, channel: str) -> bool:
        return not channel.startswith("upload:secret:")

    with (
        ProgressHub(sqs, url, wait_time_seconds=1) as hub,
        server(make_app(hub, authorize=authorize, heartbeat=0.2, retry=1500)) as base,
    ):
        client = SseClient(f"{base}/?channel=upload:main:abc").start()
        client.wait_for(lambda events: any(e.type == "snapshot" for e in events))
        publish(sqs, url, sent)
        client.wait_for(lambda events: len(progress(events)) == 5)
        client.close()
        assert client.status == 200
        headers = {k.lower(): v for k, v in client.response_headers.items()}
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        events = client.snapshot()
        assert events[0].type == "snapshot"
        assert json.loads(events[0].data)["state"] == "queued"
        assert progress(events) == sent
        assert progress(events)[1].message == TRICKY  # CR, LF and CRLF intact inside JSON
        assert [e.last_event_id for e in events if e.type == "message"] == [
            f"abc:{s}" for s in range(1, 6)
        ]
        assert b"\n:\n" in bytes(client.raw) or bytes(client.raw).startswith(b"retry: 1500")

        # The browser reconnects with the last id it saw; it gets what it missed.
        publish(sqs, url, [ev("abc", 6), ev("abc", 7, type="done")])
        wait_until(lambda: hub.stats().dispatched == 7, what="the hub to have all seven")
        again = SseClient(
            f"{base}/?branch=main&uploadId=abc", headers={"Last-Event-ID": "abc:3"}
        ).start()
        again.wait_for(lambda events: len(progress(events)) == 4)
        again.close()
        resumed = again.snapshot()
        assert resumed[0].type == "snapshot"
        assert json.loads(resumed[0].data)["state"] == "completed"
        assert [e.seq for e in progress(resumed)] == [4, 5, 6, 7]

        with httpx.Client(timeout=10) as http:
            assert http.get(f"{base}/?channel=upload:secret:x").status_code == 403
            bad = http.get(f"{base}/?channel=nope")
            assert bad.status_code == 400
            assert "upload:{branch}:{uploadId}" in bad.text
            assert http.get(f"{base}/").status_code == 400
            assert http.post(f"{base}/?branch=main").status_code == 405


def raw_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    return [encode(TRICKY, event="tricky", id="t:1"), encode("\n\nx\r\n", id="t:2")]


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    for chunk in (encode(TRICKY, event="tricky", id="t:1"), encode("\n\nx\r\n", id="t:2")):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("server", "app"), [(wsgi_server, raw_wsgi), (asgi_server, raw_asgi)], ids=["wsgi", "asgi"]
)
def test_raw_multiline_data_through_real_servers(server: Server, app: Any) -> None:
    with server(app) as base, httpx.Client(timeout=10) as http:
        body = http.get(base).text
    from tests.streaming_support import SseParser

    assert SseParser().feed(body) == [
        SseEvent("tricky", "line one\nline two\nline three\nend", "t:1"),
        SseEvent("message", "\n\nx\n", "t:2"),
    ]
