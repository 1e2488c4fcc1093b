"""Terminal events last: a ``done`` (or ``error``, ``cancelled``) that arrives while an
earlier event of its attempt is missing (a batch entry sent again after its successors were
accepted) waits for it, at most ``terminal_hold`` seconds. A browser stops reading at the
terminal event, so one delivered first would lose the late one."""

from __future__ import annotations

import datetime as dt

from transflow import ProgressEvent
from transflow.processing.progress import first_seq
from transflow.streaming.fanout import FanOut, Subscription

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.timezone.utc)
START = first_seq(1_764_842_400.0)
CHANNEL = "upload:main:u"


def event(seq: int, kind: str = "progress") -> ProgressEvent:
    extra = {"percent": 50} if kind == "progress" else {}
    return ProgressEvent.create(kind, upload_id="u", branch="main", timestamp=T0, seq=seq, **extra)


def taken(sub: Subscription, count: int, timeout: float = 5.0) -> list[tuple[int | None, str]]:
    out: list[tuple[int | None, str]] = []
    for _ in range(count):
        got = sub.get(timeout)
        assert got is not None, f"only {out} arrived"
        out.append((got.seq, got.type.value))
    return out


def test_a_done_that_overtook_an_earlier_event_waits_for_it() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(CHANNEL)
    for seq in (START, START + 1):
        fanout.dispatch(event(seq))
    # START + 2 failed in its batch and is sent again; done was accepted before it.
    assert fanout.dispatch(event(START + 3, "done")) == 0
    assert taken(sub, 2) == [(START, "progress"), (START + 1, "progress")]
    assert sub.get(0) is None
    assert fanout.stats().terminals_held == 1
    assert fanout.dispatch(event(START + 2)) == 2  # the late one, then the done it held
    assert taken(sub, 2) == [(START + 2, "progress"), (START + 3, "done")]
    assert fanout.subscribe(CHANNEL).snapshot.state.value == "completed"
    assert fanout.stats().gaps == 0


def test_a_held_done_redelivered_is_a_duplicate_and_comes_once() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(CHANNEL)
    fanout.dispatch(event(START))
    fanout.dispatch(event(START + 2, "done"))
    assert fanout.dispatch(event(START + 2, "done")) == 0
    assert fanout.stats().duplicates == 1
    fanout.dispatch(event(START + 1))
    assert taken(sub, 3) == [(START, "progress"), (START + 1, "progress"), (START + 2, "done")]
    assert sub.get(0) is None


def test_a_done_whose_missing_event_never_comes_is_delivered_after_the_hold() -> None:
    fanout = FanOut(terminal_hold=0.05)
    sub = fanout.subscribe(CHANNEL)
    fanout.dispatch(event(START))
    fanout.dispatch(event(START + 5, "error"))
    # Waited for, not slept for: the hold's timer delivers it.
    assert taken(sub, 2) == [(START, "progress"), (START + 5, "error")]
    assert fanout.stats().terminals_held == 1


def test_in_order_and_first_heard_terminals_are_not_held() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(CHANNEL)
    # The first event heard of an upload says nothing of those before it.
    assert fanout.dispatch(event(START + 7, "done")) == 1
    # A new attempt from its first seq.
    retry = first_seq(1_764_842_460.0)
    fanout.dispatch(event(retry, "start"))
    assert fanout.dispatch(event(retry + 1, "done")) == 1
    assert [seq for seq, _ in taken(sub, 3)] == [START + 7, retry, retry + 1]
    assert fanout.stats().terminals_held == 0


def test_closing_drops_the_hold_timers() -> None:
    fanout = FanOut(terminal_hold=60)
    fanout.subscribe(CHANNEL)
    fanout.dispatch(event(START))
    fanout.dispatch(event(START + 2, "done"))
    fanout.close()
    assert fanout._held == {}
