"""The SSE apps on real servers (werkzeug for WSGI, uvicorn for ASGI), read by a real HTTP
client and parsed by the spec parser in tests/support/streaming.py."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.streaming import (
    SseClient,
    SseEvent,
    SseParser,
    asgi_server,
    fifo_queue,
    publish,
    queue_counts,
    wait_until,
    wsgi_server,
)
from transflow import ConfigError, ProgressEvent, ProgressHub, ProgressQueue, issue_stream_token
from transflow.streaming.apps import asgi_app, wsgi_app
from transflow.streaming.sse import encode

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
        ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub,
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
        first_block = bytes(client.raw).split(b"\n\n", 1)[0]
        # retry: rides in the snapshot's block: a data-less block is an empty message to
        # some clients (httpx-sse).
        assert b"retry: 1500\n" in first_block
        assert b"event: snapshot\n" in first_block
        # The same read by a WHATWG parser: the first event dispatched (the snapshot, with
        # its data) already carries the reconnection time, and no block is data-less.
        parser = SseParser()
        whatwg = parser.feed(bytes(client.raw).decode("utf-8"))
        assert whatwg[0].type == "snapshot"
        assert json.loads(whatwg[0].data)["state"] == "queued"
        assert parser.retry_at[0] == 1500
        assert parser.dataless == []

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
    from tests.support.streaming import SseParser

    assert SseParser().feed(body) == [
        SseEvent("tricky", "line one\nline two\nline three\nend", "t:1"),
        SseEvent("message", "\n\nx\n", "t:2"),
    ]


SECRET = "stream-secret-Zr4nTq9xW2bLkVp8sYc3Hd6JfM0aGe1u"
OTHER_SECRET = "other-secret-pQ8vX3mK9wL2cR7tY4nB6hJ1dF5sG0zA"


def _snapshot_then_close(client: SseClient) -> list[SseEvent]:
    client.start().wait_for(lambda events: any(e.type == "snapshot" for e in events))
    client.close()
    assert client.status == 200
    return client.snapshot()


@pytest.mark.parametrize("make_app", [wsgi_app, asgi_app], ids=["wsgi", "asgi"])
def test_an_app_without_a_secret_or_hook_refuses_to_be_built(
    sqs: SQSClient, make_app: Callable[..., Any]
) -> None:
    hub = ProgressHub(sqs, ProgressQueue("https://sqs.invalid/q.fifo"))
    with pytest.raises(ConfigError, match=r"secret=.*authorize=.*allow_anonymous=True"):
        make_app(hub)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        make_app(hub, secret="short")
    make_app(hub, allow_anonymous=True)  # on purpose: allowed


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_streams_open_with_a_token_for_the_channel_only(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    url = fifo_queue(sqs, f"progress-tokens-{kind}.fifo")
    token = issue_stream_token(SECRET, "upload:main:abc", user_id="alice")
    foreign = issue_stream_token(OTHER_SECRET, "upload:main:abc")
    with (
        ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub,
        server(make_app(hub, secret=SECRET, heartbeat=0.2)) as base,
        httpx.Client(timeout=10) as http,
    ):
        anonymous = http.get(f"{base}/?channel=upload:main:abc")
        assert anonymous.status_code == 401
        assert "streamToken" in anonymous.text
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        refusals = {
            f"channel=upload:main:other&token={token}": (403, "is for upload:main:abc"),
            f"branch=main&token={token}": (403, "operator token"),
            "branch=main": (401, "operator token"),
            f"channel=upload:main:abc&token={foreign}": (401, "another secret"),
            "channel=upload:main:abc&token="
            + issue_stream_token(SECRET, "upload:main:abc", ttl=1, now=time.time() - 60): (
                401,
                "expired",
            ),
            "channel=upload:main:abc&token=tf1.not.atoken": (401, "stream token"),
            "channel=upload:main:abc&token=%C2%B2": (401, "ASCII"),
        }
        for query, (status, says) in refusals.items():
            answer = http.get(f"{base}/?{query}")
            assert (answer.status_code, says in answer.text) == (status, True), query
        bearer = http.get(
            f"{base}/?channel=upload:main:other", headers={"Authorization": f"Bearer {token}"}
        )
        assert bearer.status_code == 403

        # The token in the query (EventSource) or as a bearer header opens its channel.
        for client in (
            SseClient(f"{base}/?channel=upload:main:abc&token={token}"),
            SseClient(f"{base}/?branch=main&uploadId=abc", {"Authorization": f"Bearer {token}"}),
        ):
            assert _snapshot_then_close(client)[0].type == "snapshot"

        # An operator token for upload:main:* follows the whole branch.
        operator = issue_stream_token(SECRET, "upload:main:*", user_id="ops")
        follower = SseClient(f"{base}/?branch=main&token={operator}").start()
        follower.wait_for(lambda events: any(e.type == "snapshot" for e in events))
        hub.dispatch(ev("abc", 1))
        hub.dispatch(ev("xyz", 1))
        follower.wait_for(lambda events: len(progress(events)) == 2)
        follower.close()
        assert [e.upload_id for e in progress(follower.snapshot())] == ["abc", "xyz"]


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_the_hook_and_anonymous_access_are_explicit(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    url = fifo_queue(sqs, f"progress-anon-{kind}.fifo")
    seen: list[str] = []

    def authorize(_request: Any, channel: str) -> bool:
        seen.append(channel)
        return channel == "upload:main:*"

    with (
        ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub,
        server(make_app(hub, allow_anonymous=True, heartbeat=0.2)) as anonymous,
        server(make_app(hub, secret=SECRET, authorize=authorize, heartbeat=0.2)) as hooked,
        httpx.Client(timeout=10) as http,
    ):
        _snapshot_then_close(SseClient(f"{anonymous}/?channel=upload:main:abc"))
        assert http.get(f"{anonymous}/?branch=main").status_code == 401  # never a branch

        # The hook decides for requests without a token of ours (a host's own bearer).
        _snapshot_then_close(SseClient(f"{hooked}/?branch=main"))
        own = http.get(f"{hooked}/?channel=upload:main:x", headers={"Authorization": "Bearer jwt"})
        assert own.status_code == 403
        assert seen == ["upload:main:*", "upload:main:x"]
        token = issue_stream_token(SECRET, "upload:main:x")
        _snapshot_then_close(SseClient(f"{hooked}/?channel=upload:main:x&token={token}"))
        assert http.get(f"{hooked}/?channel=upload:main:x&token=tf1.a.b").status_code == 401


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_hostile_input_is_a_400_or_ignored_never_a_500(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    url = fifo_queue(sqs, f"progress-hostile-{kind}.fifo")
    with (
        ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub,
        server(make_app(hub, allow_anonymous=True, heartbeat=0.2)) as base,
        httpx.Client(timeout=10) as http,
    ):
        hub.dispatch(ev("abc", 1))
        hub.dispatch(ev("abc", 2))
        channel = f"{base}/?channel=upload:main:abc"
        # Last-Event-ID that is no id of ours: ignored, the stream starts from the snapshot.
        for value in ("²", "abc:²", "abc:" + "9" * 5000, "9" * 5000, "abc:-1", ":", "garbage"):
            client = SseClient(channel, {"Last-Event-ID": value.encode()})  # type: ignore[dict-item]
            assert _snapshot_then_close(client)[0].type == "snapshot", value
        for value in ("abc%3A1%00", "abc%3A%C2%B2", "abc%3A" + "9" * 5000):
            assert _snapshot_then_close(SseClient(f"{channel}&lastEventId={value}"))
        # A real id still resumes.
        resumed = SseClient(channel, {"Last-Event-ID": "abc:1"}).start()
        resumed.wait_for(lambda events: len(progress(events)) == 1)
        resumed.close()
        assert [e.seq for e in progress(resumed.snapshot())] == [2]

        for query in (
            "channel=upload:main:a%0D%0Ab",
            "channel=upload:main:a%0Aid:%20x",
            "branch=ma%0Din",
            "branch=main&uploadId=a%00b",
            "channel=upload:main:" + "x" * 600,
            "&".join(f"p{n}=1" for n in range(40)),
        ):
            answer = http.get(f"{base}/?{query}")
            assert answer.status_code == 400, query


def poison_bodies() -> list[str]:
    """Progress message bodies no stream can ever carry, each as a forger could send it."""
    good = ev("abc", 1).to_dict()
    return [
        json.dumps({**good, "uploadId": "evil\r\nevent: done\r\nid"}),  # CR/LF in the id
        json.dumps({**good, "channel": "upload:main:evil\r\nevent: done"}),
        json.dumps(good)[:-1] + ', "seq": ' + "9" * 5000 + "}",  # a 5,000-digit integer
        json.dumps({**good, "seq": 10**30}),  # a forged seq that would silence the upload
        json.dumps({**good, "seq": 2**53}),
        json.dumps({**good, "seq": "7"}),
        json.dumps({**good, "channel": "upload:other:abc"}),  # not its own channel
        json.dumps(good)[:-1] + ', "size": 1e400}',  # read as infinity: JSON cannot write it
        "\ufeff" + json.dumps(good),
        json.dumps([good]),
    ]


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_poison_progress_messages_are_dropped_counted_and_the_stream_goes_on(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    url = fifo_queue(sqs, f"progress-poison-{kind}.fifo", visibility=1)
    operator = issue_stream_token(SECRET, "upload:main:*")
    poison = poison_bodies()
    with (
        ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1, visibility_timeout=1) as hub,
        server(make_app(hub, secret=SECRET, heartbeat=0.2)) as base,
    ):
        follower = SseClient(f"{base}/?branch=main&token={operator}").start()
        follower.wait_for(lambda events: any(e.type == "snapshot" for e in events))
        # Each in the upload's own FIFO group, before its good events: a poison message that
        # was released instead of dropped would hold them back.
        for i, body in enumerate(poison):
            sqs.send_message(
                QueueUrl=url, MessageBody=body, MessageGroupId="abc", MessageDeduplicationId=f"p{i}"
            )
        publish(sqs, url, [ev("abc", 1), ev("abc", 2, type="done")])
        follower.wait_for(lambda events: len(progress(events)) == 2)
        wait_until(lambda: queue_counts(sqs, url) == (0, 0), what="the queue to be empty")
        follower.close()
        assert [e.seq for e in progress(follower.snapshot())] == [1, 2]
        assert b"event: done" not in bytes(follower.raw)
        stats = hub.stats()
        assert (stats.malformed, stats.dispatched) == (len(poison), 2)
        assert stats.poller.released == 0


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_every_closed_stream_releases_its_subscription(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    """500 clients of ``upload:main:x:*`` (an upload id, not a pattern) and of the channels
    next to it go away, some before reading a byte: no subscription is left behind."""
    url = fifo_queue(sqs, f"progress-leak-{kind}.fifo")
    hub = ProgressHub(sqs, ProgressQueue(url))  # never started: subscribing needs no queue
    queries = ["channel=upload:main:x:*", "channel=upload:main:x", "branch=main"]

    def visit(i: int) -> int:
        with http.stream("GET", f"{base}/?{queries[i % 3]}") as answer:
            if i % 2:
                next(answer.iter_raw())  # the snapshot; the others leave before it
            return answer.status_code

    with (
        server(make_app(hub, authorize=lambda _request, _channel: True, heartbeat=0.1)) as base,
        httpx.Client(timeout=10, limits=httpx.Limits(max_connections=16)) as http,
        ThreadPoolExecutor(16) as pool,
    ):
        assert set(pool.map(visit, range(500))) == {200}
        wait_until(lambda: hub.stats().subscribers == 0, what="every subscription released")
    hub.stop()


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_on_uvicorn_the_loop_writes_the_heartbeats(http: str) -> None:
    """uvicorn's own send (either HTTP protocol) is one the loop's tick runs itself
    (``apps._WRITES_AT_ONCE``): an idle stream's heartbeats arrive without its task waking.
    Guards the allow-list against a uvicorn that renames its classes."""
    import threading

    import uvicorn

    from transflow.streaming import apps
    from transflow.streaming.fanout import FanOut

    if http == "httptools":
        pytest.importorskip("httptools")
    fanout = FanOut()

    class Hub:
        def subscribe(self, channel: str, last_event_id: str | None = None, **_: Any) -> Any:
            return fanout.subscribe(channel, last_event_id)

    inner = apps.asgi_app(Hub(), allow_anonymous=True, heartbeat=0.1)
    at_once: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            at_once.append(apps._writes_at_once(send))
        await inner(scope, receive, send)

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        client = SseClient(f"http://127.0.0.1:{port}/?channel=upload:main:beat").start()
        wait_until(lambda: bytes(client.raw).count(b":\n") >= 3, 20, "three heartbeats")
        client.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert at_once == [True]
