"""StreamLimits: the caps on concurrent SSE streams, and that the ready apps give a slot back
however a stream ends (here the endings no real server shows on demand: an error inside the
stream, a response closed before it was iterated). Real servers: test_sse_limits.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import ConfigError, ProgressEvent, StreamLimits
from transflow.streaming.apps import asgi_app, wsgi_app


def test_refusals_reach_the_metrics_once_each(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSFLOW_METRICS", "emf")
    limits = StreamLimits(max_streams=3, max_streams_per_token=1)

    def emitted() -> dict[str, Any]:
        limits.emit_metrics()
        line: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return line

    held = [limits.acquire("a"), limits.acquire("b")]
    assert isinstance(limits.acquire("a"), str)  # the token's cap
    held.append(limits.acquire("c"))
    assert isinstance(limits.acquire("d"), str)  # the process's cap
    assert isinstance(limits.acquire(None), str)
    first = emitted()
    assert first["Component"] == "sse"
    assert (first["StreamsOpen"], first["StreamsRefusedFull"], first["StreamsRefusedPerToken"]) == (
        3,
        2,
        1,
    )
    # Deltas: a refusal counted once is not counted again.
    second = emitted()
    assert (second["StreamsRefusedFull"], second["StreamsRefusedPerToken"]) == (0, 0)
    for slot in held:
        assert not isinstance(slot, str)
        slot.release()
    assert emitted()["StreamsOpen"] == 0


def test_caps_per_owner_and_per_process() -> None:
    limits = StreamLimits(max_streams=3, max_streams_per_token=2, retry_after=7)
    a1, a2 = limits.acquire("a"), limits.acquire("a")
    refused = limits.acquire("a")
    assert isinstance(refused, str)
    assert "max_streams_per_token" in refused
    assert "retry after 7 s" in refused
    assert "\n" not in refused
    b = limits.acquire("b")
    full = limits.acquire(None)
    assert isinstance(full, str)
    assert "max_streams=3" in full
    assert limits.stats() == limits.stats().__class__(
        open=3, peak=3, refused_full=1, refused_per_token=1
    )
    assert limits.stats().refused == 2
    assert not isinstance(a1, str)
    assert not isinstance(b, str)
    a1.release()
    a1.release()  # idempotent: every way a stream ends may call it
    assert limits.stats().open == 2
    assert not isinstance(limits.acquire("a"), str)
    assert not isinstance(a2, str)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", None])), max_size=60))
def test_open_never_exceeds_the_caps_and_releases_return_every_slot(
    steps: list[tuple[bool, str | None]],
) -> None:
    limits = StreamLimits(max_streams=5, max_streams_per_token=2)
    held: list[Any] = []
    for acquire, owner in steps:
        if acquire:
            slot = limits.acquire(owner)
            if not isinstance(slot, str):
                held.append((owner, slot))
        elif held:
            held.pop(0)[1].release()
        assert limits.stats().open == len(held) <= 5
        for name in ("a", "b"):
            assert sum(1 for o, _ in held if o == name) <= 2
    for _, slot in held:
        slot.release()
    assert limits.stats().open == 0
    assert limits._by_owner == {}


@pytest.mark.parametrize(
    "options",
    [
        {"max_streams": 0},
        {"max_streams_per_token": 0},
        {"max_streams": 1.5},
        {"max_streams": True},
        {"retry_after": 0},
        {"retry_after": 86_400},
    ],
)
def test_options_out_of_range_are_config_errors(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ConfigError, match=f"StreamLimits {name} must be an integer"):
        StreamLimits(**options)


def test_a_burst_of_refusals_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    limits = StreamLimits(max_streams=1)
    assert not isinstance(limits.acquire(None), str)
    with caplog.at_level(logging.WARNING, logger="transflow.streaming.limits"):
        for _ in range(50):
            assert isinstance(limits.acquire(None), str)
    warnings = [r for r in caplog.records if r.name == "transflow.streaming.limits"]
    assert len(warnings) == 1
    assert "max_streams=1" in warnings[0].getMessage()
    assert limits.stats().refused_full == 50


@attrs.define
class _Feed:
    """A subscription that fails on its first read, as a bug or a broken hub would."""

    channel: str = "upload:main:abc"
    closed: bool = False

    def snapshot_json(self) -> str:
        return '{"state": "queued"}'

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        raise RuntimeError("the feed broke")

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None:
        raise RuntimeError("the feed broke")

    def close(self) -> None:
        self.closed = True


@attrs.define
class _Hub:
    feeds: list[_Feed] = attrs.field(factory=list)

    def subscribe(self, channel: str, last_event_id: str | None = None, **_: Any) -> _Feed:
        self.feeds.append(_Feed(channel))
        return self.feeds[-1]


ENVIRON = {"REQUEST_METHOD": "GET", "QUERY_STRING": "channel=upload:main:abc"}


def test_wsgi_slot_released_on_error_and_when_closed_unread() -> None:
    limits = StreamLimits(max_streams=1)
    app = wsgi_app(_Hub(), allow_anonymous=True, limits=limits)
    statuses: list[str] = []

    def start_response(status: str, _headers: list[tuple[str, str]]) -> None:
        statuses.append(status)

    body: Any = app(dict(ENVIRON), start_response)
    assert limits.stats().open == 1
    assert next(iter(body)).startswith(b"event: snapshot")
    with pytest.raises(RuntimeError, match="the feed broke"):
        next(iter(body))
    body.close()  # what the server does after an error
    assert limits.stats().open == 0

    unread: Any = app(dict(ENVIRON), start_response)
    unread.close()  # the client left before the first byte
    assert limits.stats().open == 0
    assert statuses == ["200 OK", "200 OK"]


def test_asgi_slot_released_on_error() -> None:
    limits = StreamLimits(max_streams=1)
    app = asgi_app(_Hub(), allow_anonymous=True, limits=limits)
    scope = {
        "type": "http",
        "method": "GET",
        "headers": [],
        "query_string": b"channel=upload:main:abc",
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        with pytest.raises(RuntimeError, match="the feed broke"):
            await app(scope, receive, send)

    asyncio.run(run())
    assert sent[0]["status"] == 200
    assert limits.stats().open == 0


@pytest.mark.parametrize("make_app", [wsgi_app, asgi_app], ids=["wsgi", "asgi"])
def test_apps_refuse_limits_that_are_not_stream_limits(make_app: Any) -> None:
    with pytest.raises(ConfigError, match=r"limits must be a transflow\.StreamLimits"):
        make_app(_Hub(), allow_anonymous=True, limits={"max_streams": 5})
    with pytest.raises(ConfigError, match="stream_owner must be callable"):
        make_app(_Hub(), authorize=lambda _r, _c: True, stream_owner="alice")
