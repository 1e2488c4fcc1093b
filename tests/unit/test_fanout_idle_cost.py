"""What an idle subscriber costs its event loop (issue 26): the ASGI app with N connections
on one loop, counted in tasks, timers, cross-thread wake-ups, streams per tick and per loop
callback, and sends per event, which load does not change."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest

from tests.support.fanout import event
from transflow._wire.channels import upload_channel
from transflow._wire.model import ProgressEvent
from transflow.streaming.apps import asgi_app
from transflow.streaming.fanout import FanOut, Subscription
from transflow.streaming.latency import Window
from transflow.streaming.waiters import CHUNK, SLOT, LoopWaiters, loop_lag, waiters_of

CHANNEL = upload_channel("main", "idle")
N = 400


class _Hub:
    def __init__(self) -> None:
        self.fanout = FanOut()

    def subscribe(
        self, channel: str, last_event_id: str | None = None, *, principal: Any = None
    ) -> Subscription:
        return self.fanout.subscribe(channel, last_event_id)


class _Loop:
    """Counts what the streams ask of the running loop: timers, and crossings from other
    threads (as the hub's poller thread makes when it dispatches)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timers = 0
        self.crossings = 0
        self.thread = threading.get_ident()
        call_at, call_soon_threadsafe = loop.call_at, loop.call_soon_threadsafe

        def counting_call_at(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            self.timers += 1
            return call_at(*args, **kwargs)

        def counting_threadsafe(*args: Any, **kwargs: Any) -> asyncio.Handle:
            if threading.get_ident() != self.thread:
                self.crossings += 1
            return call_soon_threadsafe(*args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign,assignment]
        loop.call_soon_threadsafe = counting_threadsafe  # type: ignore[method-assign,assignment]


async def _until(condition: Callable[[], bool], changed: asyncio.Event, what: str) -> None:
    async def wait() -> None:
        while not condition():
            changed.clear()
            await changed.wait()

    try:
        await asyncio.wait_for(wait(), 20)
    except asyncio.TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def _serve_idle(spec_version: str, heartbeat: float, beats: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counted = _Loop(loop)
    hub = _Hub()
    app = asgi_app(hub, allow_anonymous=True, heartbeat=heartbeat)
    bodies: list[list[bytes]] = [[] for _ in range(N)]
    changed = asyncio.Event()
    gone = asyncio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    def sender(i: int) -> Callable[[MutableMapping[str, Any]], Any]:
        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body":
                bodies[i].append(message["body"])
                changed.set()

        return send

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "method": "GET",
        "query_string": f"channel={CHANNEL}".encode(),
        "headers": [],
    }
    before = len(asyncio.all_tasks())
    conns = [asyncio.ensure_future(app(dict(scope), receive, sender(i))) for i in range(N)]
    await _until(lambda: all(bodies), changed, "every snapshot")
    await asyncio.sleep(0)  # the last snapshot's stream parks
    waiters = waiters_of(loop)
    figures: dict[str, Any] = {
        "tasks_per_connection": (len(asyncio.all_tasks()) - before) / N,
        "timers_while_parking": counted.timers,
        "most_in_a_slot": _most_in_a_slot(waiters),
    }
    if beats:
        timers = counted.timers
        await _until(lambda: all(len(b) > beats for b in bodies), changed, "the heartbeats")
        figures["timers_per_heartbeat"] = (counted.timers - timers) / (N * beats)
    crossings = counted.crossings
    dispatcher = threading.Thread(target=hub.fanout.dispatch, args=[event("idle", 1)])
    dispatcher.start()
    dispatcher.join()
    figures["crossings_per_dispatch"] = counted.crossings - crossings
    await _until(lambda: all(b"id: idle:1" in b"".join(b) for b in bodies), changed, "delivery")
    await asyncio.sleep(0)  # the last woken stream parks again
    figures["written"] = hub.fanout.written() if hasattr(hub.fanout, "written") else None
    figures["most_in_a_slot_after_dispatch"] = _most_in_a_slot(waiters)
    figures["most_per_callback"] = waiters.most_per_callback
    gone.set()
    for conn in conns:
        conn.cancel()
    await asyncio.gather(*conns, return_exceptions=True)
    return figures


def _most_in_a_slot(waiters: LoopWaiters) -> int:
    """The most streams whose next deadline falls in one slot of the loop's timer wheel: what
    one tick wakes (the streams' own deadlines, not their timing, decide it)."""
    return max(waiters.slot_sizes(), default=0)


def test_an_idle_asgi_stream_costs_one_task_and_shares_its_loops_one_timer() -> None:
    """Per connection: the server's task only (spec 2.4 servers report a gone client from
    send); one timer for all; one crossing into the loop per dispatch, not one per
    subscriber. Before issue 26: 2 tasks (+1 watcher), a timer and a crossing each."""
    figures = asyncio.run(_serve_idle("2.4", heartbeat=15.0, beats=0))
    assert figures["tasks_per_connection"] == 1
    assert figures["timers_while_parking"] < 10  # rounded deadlines; and _until's own
    assert figures["crossings_per_dispatch"] == 1
    assert figures["written"].count == N
    assert figures["most_per_callback"] <= CHUNK


def test_older_servers_keep_the_disconnect_watcher_and_heartbeats_share_ticks() -> None:
    """uvicorn and hypercorn (spec 2.3 / 2.1) return silently from send after a client left:
    their streams keep one watcher task each. Heartbeats come from the loop's ticks: far
    fewer timers than connections x heartbeats."""
    figures = asyncio.run(_serve_idle("2.3", heartbeat=0.2, beats=2))
    assert figures["tasks_per_connection"] == 2
    assert figures["timers_per_heartbeat"] < 0.25  # 1.0 before: one per wait
    assert figures["crossings_per_dispatch"] == 1
    assert loop_lag().quantiles().count > 0


def test_aget_waits_with_no_task_and_times_out_on_the_shared_timer() -> None:
    fanout = FanOut()
    subs = [fanout.subscribe(CHANNEL) for _ in range(50)]

    async def main() -> list[ProgressEvent | None]:
        before = len(asyncio.all_tasks())
        waits = [asyncio.ensure_future(sub.aget(timeout=0.05)) for sub in subs]
        await asyncio.sleep(0)  # let each wait park
        assert len(asyncio.all_tasks()) - before == len(subs)
        return list(await asyncio.gather(*waits))

    assert asyncio.run(main()) == [None] * len(subs)


def test_a_window_reports_quantiles_of_its_recent_samples() -> None:
    window = Window(size=100)
    assert window.quantiles().count == 0
    for ms in range(1, 201):
        window.add(ms / 1000)
    got = window.quantiles()
    assert (got.count, got.p50_ms, got.p99_ms, got.max_ms) == (100, 151.0, 200.0, 200.0)


def test_on_a_spec_2_4_server_the_first_write_after_a_disconnect_ends_the_stream() -> None:
    """No watcher task there: the server's send raises (ASGI 2.4) and the stream ends,
    unsubscribed, at its next heartbeat."""
    hub = _Hub()
    app = asgi_app(hub, allow_anonymous=True, heartbeat=0.05)
    writes: list[bytes] = []

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.Event().wait()  # never says http.disconnect
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if writes:
                raise ConnectionResetError("client gone")  # what a 2.4 server raises
            writes.append(message["body"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "method": "GET",
        "query_string": f"channel={CHANNEL}".encode(),
        "headers": [],
    }

    async def main() -> None:
        await asyncio.wait_for(app(scope, receive, send), 20)

    asyncio.run(main())
    assert len(writes) == 1  # the snapshot; the heartbeat after it found the client gone
    assert hub.fanout.stats().subscribers == 0


def test_heartbeats_are_spread_over_the_period_and_stay_spread_after_a_dispatch() -> None:
    """N streams opened at once: their heartbeat deadlines fall in many slots of the wheel,
    a few streams per tick. An event that wakes them all does not line them up again: the
    next heartbeat of each stream keeps its place in the period. Before: the deadlines were
    rounded to 1/16 of the period, and counted from each stream's last write, so one tick
    (and one after each dispatch) woke all N."""
    figures = asyncio.run(_serve_idle("2.4", heartbeat=15.0, beats=0))
    slots_per_period = 15.0 / SLOT
    even = N / slots_per_period  # 400 streams over 300 slots: 1 or 2 per slot
    assert figures["most_in_a_slot"] <= even + 2, figures
    assert figures["most_in_a_slot_after_dispatch"] <= even + 2, figures


def test_a_stream_writes_the_events_waiting_for_it_in_one_send() -> None:
    """Ten events dispatched before the stream's loop ran: one send carries all ten (ten
    sends before), each with its own id, and each is timed dispatch->written."""
    hub = _Hub()
    app = asgi_app(hub, allow_anonymous=True, heartbeat=15.0)
    bodies: list[bytes] = []
    changed = asyncio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            changed.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "method": "GET",
        "query_string": f"channel={CHANNEL}".encode(),
        "headers": [],
    }

    async def main() -> None:
        conn = asyncio.ensure_future(app(scope, receive, send))
        await _until(lambda: len(bodies) == 1, changed, "the snapshot")
        await asyncio.sleep(0)  # the stream parks
        for seq in range(1, 11):  # no await in between: all wait when the stream wakes
            hub.fanout.dispatch(event("idle", seq))
        await _until(lambda: b"id: idle:10" in b"".join(bodies), changed, "the events")
        conn.cancel()
        await asyncio.gather(conn, return_exceptions=True)

    asyncio.run(main())
    assert len(bodies) == 2, [b[:40] for b in bodies]
    assert [f"id: idle:{n}\n".encode() in bodies[1] for n in range(1, 11)] == [True] * 10
    assert hub.fanout.written().count == 10


def test_a_branch_stream_sends_each_event_of_a_batch_with_its_own_cursor() -> None:
    """take_ready gives each event the id a one-at-a-time reader would have sent: for a
    branch, the cursor after that event."""
    fanout = FanOut()
    one, many = fanout.subscribe("upload:main:*"), fanout.subscribe("upload:main:*")
    for upload, seq in [("a", 1), ("b", 1), ("a", 2), ("c", 1)]:
        fanout.dispatch(event(upload, seq))
    singly = []
    while (got := one.get(timeout=0)) is not None:
        singly.append((got, one.last_event_id))
    first = many.get(timeout=0)
    assert first is not None
    batched = [(first, many.last_event_id), *many.take_ready(10)]
    assert batched == singly
    assert len({cursor for _, cursor in batched}) == 4


class _Flow:
    write_paused = False


class _AtOnce:
    """Stands for uvicorn's RequestResponseCycle: its send writes at once, or, while its
    flow control says the buffer is full, waits until the client reads."""

    def __init__(self, bodies: list[bytes], changed: asyncio.Event) -> None:
        self.bodies, self.changed = bodies, changed
        self.flow = _Flow()
        self.full: asyncio.Future[None] | None = None
        self.abandoned = 0

    def fill(self, full: asyncio.Future[None] | None) -> None:
        self.full = full
        self.flow.write_paused = full is not None

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.full is not None:
            try:
                await self.full
            except GeneratorExit:
                self.abandoned += 1
                self.changed.set()
                raise
        if message["type"] == "http.response.body":
            self.bodies.append(message["body"])
            self.changed.set()


def test_on_uvicorn_the_loop_writes_heartbeats_and_events_without_waking_the_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a send that writes at once (uvicorn's), each heartbeat is written by the loop's
    tick and each dispatched event by the loop's wake-up: no future resolved, no task woken.
    A beat that would wait for a full buffer is skipped, its send abandoned; an event then
    goes to the stream's task, which waits for the buffer and writes it."""
    from transflow.streaming import apps

    monkeypatch.setattr(
        apps, "_WRITES_AT_ONCE", frozenset({f"{_AtOnce.__module__}.{_AtOnce.__qualname__}"})
    )
    hub = _Hub()
    app = asgi_app(hub, allow_anonymous=True, heartbeat=0.2)
    changed = asyncio.Event()
    cycles = [_AtOnce([], changed) for _ in range(N)]

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "method": "GET",
        "query_string": f"channel={CHANNEL}".encode(),
        "headers": [],
    }

    def delivered(seq: int) -> Callable[[], bool]:
        mark = f"id: idle:{seq}\n".encode()
        return lambda: all(mark in b"".join(c.bodies) for c in cycles)

    async def main() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        waiters = waiters_of(loop)
        conns = [asyncio.ensure_future(app(dict(scope), receive, c.send)) for c in cycles]
        await _until(lambda: all(c.bodies for c in cycles), changed, "every snapshot")
        await asyncio.sleep(0)  # the last snapshot's stream parks
        resolved, beats = waiters.resolved, waiters.heartbeats
        await _until(lambda: all(len(c.bodies) >= 3 for c in cycles), changed, "two beats each")
        figures = {"beat_wakeups": waiters.resolved - resolved}
        figures["tick_beats"] = waiters.heartbeats - beats
        resolved, direct = waiters.resolved, waiters.direct_writes
        for seq in (1, 2, 3):  # one dispatch after another: the loop runs in between
            hub.fanout.dispatch(event("idle", seq))
            await _until(delivered(seq), changed, f"event {seq}")
        figures["event_wakeups"] = waiters.resolved - resolved
        figures["direct_writes"] = waiters.direct_writes - direct
        assert figures["beat_wakeups"] == figures["event_wakeups"] == 0, figures
        full: asyncio.Future[None] = loop.create_future()
        cycles[0].fill(full)
        await _until(lambda: cycles[0].abandoned > 0, changed, "a skipped beat")
        hub.fanout.dispatch(event("idle", 4))
        others = cycles[1:]
        await _until(
            lambda: all(b"id: idle:4\n" in b"".join(c.bodies) for c in others), changed, "4"
        )
        assert b"id: idle:4" not in b"".join(cycles[0].bodies)
        cycles[0].fill(None)
        full.set_result(None)
        await _until(delivered(4), changed, "event 4 after the buffer drained")
        figures["abandoned"] = cycles[0].abandoned
        for conn in conns:
            conn.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        return figures

    figures = asyncio.run(main())
    assert figures["beat_wakeups"] == 0, figures
    assert figures["tick_beats"] >= 2 * N - N // 10, figures  # a few beat before counting
    assert figures["event_wakeups"] == 0, figures
    assert figures["direct_writes"] == 3 * N, figures
    assert figures["abandoned"] >= 1
