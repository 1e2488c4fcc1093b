"""The caps on concurrent event streams (StreamLimits) on real servers (werkzeug for WSGI,
uvicorn for ASGI): one stream over a cap is a 503 with Retry-After and a one-line reason,
and a stream that ends gives its slot back, so a cap never leaks shut."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.streaming import SseClient, asgi_server, fifo_queue, wait_until, wsgi_server
from transflow import ProgressEvent, ProgressHub, ProgressQueue, StreamLimits, issue_stream_token
from transflow.streaming.apps import asgi_app, wsgi_app
from transflow.streaming.limits import DEFAULT_MAX_STREAMS_PER_TOKEN

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

Server = Callable[[Any], AbstractContextManager[str]]
KINDS: list[tuple[str, Server, Callable[..., Any]]] = [
    ("wsgi", wsgi_server, wsgi_app),
    ("asgi", asgi_server, asgi_app),
]
IDS = [k[0] for k in KINDS]
SECRET = "stream-secret-Zr4nTq9xW2bLkVp8sYc3Hd6JfM0aGe1u"


def _streaming(url: str) -> SseClient:
    client = SseClient(url).start()
    wait_until(lambda: client.status is not None or client.ended.is_set(), what=url)
    assert client.status == 200, bytes(client.raw)
    client.wait_for(lambda events: any(e.type == "snapshot" for e in events))
    return client


@pytest.fixture
def hub(sqs: SQSClient) -> Iterator[ProgressHub]:
    # Never started: subscribing needs no queue, and these tests dispatch nothing.
    hub = ProgressHub(sqs, ProgressQueue(fifo_queue(sqs, "progress-limits.fifo")))
    yield hub
    hub.stop()


def _refused(answer: httpx.Response, says: str, retry_after: int) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == str(retry_after)
    assert says in answer.text
    assert answer.text.count("\n") == 1  # one line


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=IDS)
def test_one_token_gets_its_default_cap_then_503_and_a_closed_stream_frees_its_slot(
    hub: ProgressHub, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    limits = StreamLimits()  # the defaults: 16 per token
    token = issue_stream_token(SECRET, "upload:main:abc", user_id="alice")
    other = issue_stream_token(SECRET, "upload:main:abc", user_id="alice", ttl=600)
    url = f"/?channel=upload:main:abc&token={token}"
    with (
        server(make_app(hub, secret=SECRET, heartbeat=0.1, limits=limits)) as base,
        httpx.Client(timeout=10) as http,
        ExitStack() as streams,
    ):
        clients = [_streaming(base + url) for _ in range(DEFAULT_MAX_STREAMS_PER_TOKEN)]
        for client in clients:
            streams.callback(client.close)
        _refused(http.get(base + url), "max_streams_per_token", limits.retry_after)
        # The bearer header is the same token: the same cap.
        bearer = http.get(
            f"{base}/?channel=upload:main:abc", headers={"Authorization": f"Bearer {token}"}
        )
        _refused(bearer, "max_streams_per_token", limits.retry_after)
        # Another token has its own cap.
        streams.callback(_streaming(f"{base}/?channel=upload:main:abc&token={other}").close)
        assert limits.stats().refused_per_token == 2

        clients[0].close()  # the browser tab goes away
        wait_until(
            lambda: limits.stats().open == DEFAULT_MAX_STREAMS_PER_TOKEN,
            what="the closed stream's slot released",
        )
        streams.callback(_streaming(base + url).close)
        assert limits.stats().open == DEFAULT_MAX_STREAMS_PER_TOKEN + 1


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=IDS)
def test_the_process_cap_refuses_with_503_until_a_stream_ends(
    hub: ProgressHub, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    limits = StreamLimits(max_streams=4, retry_after=3)
    url = "/?channel=upload:main:abc"
    with (
        server(make_app(hub, authorize=lambda _r, _c: True, heartbeat=0.1, limits=limits)) as base,
        httpx.Client(timeout=10) as http,
        ExitStack() as streams,
    ):
        clients = [_streaming(base + url) for _ in range(4)]
        for client in clients:
            streams.callback(client.close)
        _refused(http.get(base + url), "max_streams=4", 3)
        _refused(http.get(f"{base}/?branch=main"), "max_streams=4", 3)
        # A request that may not stream is told so, not that the server is full.
        assert http.get(f"{base}/?channel=nope").status_code == 400
        assert limits.stats().refused_full == 2

        clients[1].close()
        wait_until(lambda: limits.stats().open == 3, what="the closed stream's slot released")
        streams.callback(_streaming(base + url).close)
        _refused(http.get(base + url), "max_streams=4", 3)
        assert limits.stats().peak == 4


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=IDS)
def test_streams_ended_by_the_server_give_their_slots_back(
    hub: ProgressHub, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    """The hub stops (a deploy): every stream ends, and with it every slot."""
    limits = StreamLimits(max_streams=3)
    with server(make_app(hub, allow_anonymous=True, heartbeat=0.1, limits=limits)) as base:
        clients = [_streaming(f"{base}/?channel=upload:main:u{i}") for i in range(3)]
        hub.stop()
        for client in clients:
            wait_until(client.ended.is_set, what="the stream to end")
        wait_until(lambda: limits.stats().open == 0, what="every slot released")


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=IDS)
def test_the_hook_caps_per_owner_with_stream_owner(
    hub: ProgressHub, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    limits = StreamLimits(max_streams_per_token=2)

    def owner(request: Any) -> str | None:
        # The host's session: here a header (the WSGI environ or the ASGI scope).
        if "HTTP_X_USER" in request:
            return str(request["HTTP_X_USER"])
        headers = dict(request.get("headers", []))
        user = headers.get(b"x-user")
        return None if user is None else user.decode()

    app = make_app(
        hub, authorize=lambda _r, _c: True, stream_owner=owner, heartbeat=0.1, limits=limits
    )
    url = "/?channel=upload:main:abc"
    with server(app) as base, httpx.Client(timeout=10) as http, ExitStack() as streams:
        for user in ("alice", "alice", "bob"):
            client = SseClient(base + url, headers={"X-User": user}).start()
            streams.callback(client.close)
            client.wait_for(lambda events: len(events) > 0)
        _refused(http.get(base + url, headers={"X-User": "alice"}), "max_streams_per_token", 15)
        # No owner named: only the process cap applies.
        for _ in range(3):
            streams.callback(_streaming(base + url).close)
        assert limits.stats() == limits.stats().__class__(
            open=6, peak=6, refused_full=0, refused_per_token=1
        )


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=IDS)
def test_a_lagged_stream_gives_its_slot_back(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    """A client that stops reading is cut off with ``lagged`` (its buffer over budget); the
    response ends and the slot is free, while the client's connection is still open."""
    url = fifo_queue(sqs, f"progress-lagged-{kind}.fifo")
    hub = ProgressHub(sqs, ProgressQueue(url), buffer_bytes=1 << 20)
    limits = StreamLimits(max_streams=1)
    big = "x" * 200_000
    with (
        server(make_app(hub, allow_anonymous=True, heartbeat=0.1, limits=limits)) as base,
        socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as client,
    ):
        client.sendall(b"GET /?channel=upload:main:abc HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(lambda: hub.stats().subscribers == 1, what="the stream to subscribe")
        assert limits.stats().open == 1
        seq = 0
        # Not reading: the socket's buffers fill, then the subscription's 1 MiB budget.
        while hub.stats().lagged == 0:
            seq += 1
            assert seq < 10_000, "never lagged"
            event = ProgressEvent.create(
                "progress", upload_id="abc", branch="main", seq=seq, message=big
            )
            hub.dispatch(event)
        # (The stream may already have written `lagged` and given its slot back here: a
        # loop that runs late lets the hub's thread pass the budget before the first write.)
        received = bytearray()
        client.settimeout(10)
        while b"event: lagged" not in received:
            chunk = client.recv(1 << 20)
            assert chunk, "the stream ended without a lagged event"
            received.extend(chunk)
        wait_until(lambda: limits.stats().open == 0, what="the lagged stream's slot released")
    hub.stop()
