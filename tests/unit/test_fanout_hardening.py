"""Hostile input at the fan-out core (issue 13), without an endpoint: poison events refused,
replay bounded in bytes, branch resume without scanning every buffer, and no subscription
left behind by any channel a client can name."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fanout import NoClient, event, seqs
from tests.support.fanout import drain as drain_events
from transflow import (
    ChannelError,
    ConfigError,
    EventFormatError,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    ReceivedMessage,
    branch_channel,
    upload_channel,
)
from transflow._wire.model import MAX_SEQ
from transflow.streaming.apps import wsgi_app
from transflow.streaming.fanout import FanOut, event_size, split_event_id
from transflow.streaming.sse import dropped_events, stream


def drain(sub: Any) -> list[int | None]:
    return seqs(drain_events(sub))


def hub(**options: Any) -> ProgressHub:
    return ProgressHub(NoClient(), ProgressQueue("https://queue/progress.fifo"), **options)  # type: ignore[arg-type]


# -- poison messages --------------------------------------------------------------------


def test_split_event_id_refuses_what_no_publisher_sends() -> None:
    assert split_event_id(f"u:{MAX_SEQ}") == ("u", MAX_SEQ)
    for bad in ["u:²", "u:" + "9" * 5000, f"u:{MAX_SEQ + 1}", "u:١٢", ":5", 5, None, b"u:1"]:
        assert split_event_id(bad) is None, bad


def test_a_seq_past_what_a_publisher_makes_is_refused_when_parsed() -> None:
    good = event("u", 1).to_dict()
    for seq in [MAX_SEQ + 1, 10**30, -1, "5", True, 1.5]:
        with pytest.raises(EventFormatError, match="seq"):
            ProgressEvent.from_dict({**good, "seq": seq})
    with pytest.raises(EventFormatError, match="a number has more than"):
        ProgressEvent.from_json(json.dumps(good)[:-1] + ', "seq": ' + "9" * 5000 + "}")
    assert ProgressEvent.from_dict({**good, "seq": MAX_SEQ}).seq == MAX_SEQ


def test_events_no_stream_can_carry_are_refused_by_dispatch() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(branch_channel("main"))
    good = event("u", 1).to_dict()
    infinite = ProgressEvent.from_json(json.dumps(good)[:-1] + ', "size": 1e400}')
    poison = [
        ProgressEvent.from_dict({**good, "channel": "upload:main:other"}),
        ProgressEvent.from_dict({**good, "channel": "upload:main:*"}),
        ProgressEvent.from_dict({**good, "branch": "ma\nin", "channel": "upload:ma\nin:u"}),
        infinite,
    ]
    for bad in poison:
        with pytest.raises(EventFormatError):
            fanout.dispatch(bad)
    with pytest.raises(EventFormatError, match="uploadId"):
        ProgressEvent.from_dict({**good, "uploadId": "u\r\nevent: done"})
    assert fanout.dispatch(event("u", 1)) == 1
    assert drain(sub) == [1]
    assert fanout.stats().channels == 1  # the refused ones left no trace


def test_the_hub_drops_and_counts_every_poison_message_and_its_group_moves_on() -> None:
    h = hub()
    sub = h.subscribe(upload_channel("main", "u"))
    good = event("u", 1).to_dict()
    bodies = [
        json.dumps({**good, "seq": 10**30}),
        json.dumps(good)[:-1] + ', "seq": ' + "9" * 5000 + "}",
        json.dumps({**good, "uploadId": "u\r\nid: 9"}),
        json.dumps({**good, "channel": "upload:main:v"}),
        json.dumps(good)[:-1] + ', "x": 1e400}',
        "[" * 100_000,
        "\ud800",
        json.dumps(good),
        event("u", 2).to_json(),
    ]
    for i, body in enumerate(bodies):
        h.poller.handler(ReceivedMessage(f"m{i}", f"r{i}", body))  # returns: deleted
    assert drain(sub) == [1, 2]
    stats = h.stats()
    assert (stats.malformed, stats.dispatched) == (len(bodies) - 2, 2)


def test_a_bug_in_dispatch_drops_the_message_rather_than_block_its_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = hub()

    def broken(*_: object, **__: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(FanOut, "dispatch", broken)
    h.poller.handler(ReceivedMessage("m", "r", event("u", 1).to_json()))
    assert h.stats().malformed == 1


# -- replay bounded in bytes ------------------------------------------------------------


def big(upload: str, seq: int, kb: int = 200) -> ProgressEvent:
    return event(upload, seq, message="x" * (kb * 1024))


def test_replay_is_bounded_in_bytes_per_channel() -> None:
    fanout = FanOut(replay_bytes=1 << 20)
    for seq in range(1, 301):  # 300 x 200 KB: 60 MB if only the count bounded it
        fanout.dispatch(big("u", seq))
    stats = fanout.stats()
    assert stats.replay_bytes <= 1 << 20
    assert stats.replay_evicted == 300 - 5
    resumed = fanout.subscribe(upload_channel("main", "u"), "u:1")
    assert drain(resumed) == [296, 297, 298, 299, 300]


def test_replay_is_bounded_in_bytes_in_total_least_recent_uploads_first() -> None:
    size = event_size(big("u0", 1))
    fanout = FanOut(replay_bytes=10 * size, replay_total_bytes=6 * size)
    for upload in ("u0", "u1", "u2"):
        for seq in (1, 2, 3):
            fanout.dispatch(big(upload, seq))
    stats = fanout.stats()
    assert stats.replay_bytes == 6 * size
    assert stats.replay_evicted == 3
    assert drain(fanout.subscribe(upload_channel("main", "u0"), "u0:0")) == []
    assert drain(fanout.subscribe(upload_channel("main", "u2"), "u2:0")) == [1, 2, 3]
    # An event larger than a budget is delivered live, never kept.
    live = fanout.subscribe(upload_channel("main", "u3"))
    fanout.dispatch(big("u3", 1, kb=size // 1024 * 7))
    assert drain(live) == [1]
    assert fanout.stats().replay_evicted == 4
    assert drain(fanout.subscribe(upload_channel("main", "u3"), "u3:0")) == []


def test_forgotten_channels_give_their_replay_bytes_back() -> None:
    fanout = FanOut(max_channels=2)
    for upload in ("a", "b", "c", "d"):
        fanout.dispatch(event(upload, 1))
    stats = fanout.stats()
    assert stats.channels == 2
    assert stats.replay_bytes == event_size(event("c", 1)) + event_size(event("d", 1))


@pytest.mark.parametrize("option", ["replay_bytes", "replay_total_bytes"])
def test_byte_budgets_out_of_range_are_config_errors(option: str) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be at least 0, not -1"):
        FanOut(**{option: -1})
    with pytest.raises(ConfigError, match=f"ProgressHub {option} must be at least 0"):
        hub(**{option: -1})


# -- resume without scanning or sorting every buffer under the lock -----------------------


class NoForwardScan(deque[Any]):
    """A replay buffer that fails a test iterating it from the start (a full scan)."""

    def __iter__(self) -> Any:
        raise AssertionError("a resume scanned a whole replay buffer")


def test_branch_resume_walks_back_only_over_what_it_replays() -> None:
    fanout = FanOut()
    for seq in range(1, 201):
        for upload in ("a", "b", "c"):
            fanout.dispatch(event(upload, seq))
    fanout.dispatch(event("x", 1, branch="dev"))
    for known in fanout._channels.values():
        known.replay = NoForwardScan(known.replay)
    sub = fanout.subscribe(branch_channel("main"), "b:199")
    got = [(e.upload_id, e.seq) for e in iter(lambda: sub.get(timeout=0), None)]
    assert got == [("c", 199), ("a", 200), ("b", 200), ("c", 200)]
    assert [s.upload_id for s in sub.snapshots] == ["a", "b", "c"]  # never dev's
    exact = fanout.subscribe(upload_channel("main", "a"), "a:197")
    assert drain(exact) == [198, 199, 200]


def test_branch_resume_from_an_unknown_or_evicted_id_replays_nothing() -> None:
    fanout = FanOut(replay_size=3)
    for seq in range(1, 10):
        fanout.dispatch(event("a", seq))
    for last in ["a:2", "zz:5", "a:99", "garbage"]:
        assert drain(fanout.subscribe(branch_channel("main"), last)) == [], last
    assert drain(fanout.subscribe(branch_channel("main"), "a:7")) == [8, 9]


def test_a_resume_puts_the_replay_before_events_dispatched_meanwhile() -> None:
    fanout = FanOut()
    for seq in (1, 2, 3):
        fanout.dispatch(event("a", seq))
    sub = fanout.subscribe(branch_channel("main"), "a:1")
    fanout.dispatch(event("a", 4))
    assert drain(sub) == [2, 3, 4]


# -- every closed subscription is released ------------------------------------------------

clients_channels = st.one_of(
    st.sampled_from(["upload:main:x:*", "upload:main:*", "upload:main:x", "upload:main:*:*"]),
    st.builds(
        lambda b, u, star: f"upload:{b}:{u}{':*' if star else ''}",
        st.text("ab:*", min_size=1, max_size=4),
        st.text("xy:*", min_size=1, max_size=4),
        st.booleans(),
    ),
)


def test_500_subscriptions_to_a_starred_upload_id_leave_nothing_after_close() -> None:
    fanout = FanOut()
    for _ in range(500):
        fanout.subscribe("upload:main:x:*").close()
    assert fanout.stats().subscribers == 0
    assert (fanout._exact, fanout._patterns) == ({}, {})


@settings(max_examples=60, deadline=None)
@given(st.lists(clients_channels, max_size=20), st.randoms(use_true_random=False))
def test_whatever_channel_a_client_names_closing_releases_it(channels: list[str], rnd: Any) -> None:
    fanout = FanOut(buffer_size=2)
    subs = []
    for channel in channels:
        try:
            subs.append(fanout.subscribe(channel))
        except ChannelError:
            continue
        fanout.dispatch(event("x", len(subs)))  # lags some of them off
    rnd.shuffle(subs)
    for sub in subs:
        sub.close()
    assert fanout.stats().subscribers == 0
    assert (fanout._exact, fanout._patterns) == ({}, {})


def test_a_wsgi_response_closed_before_it_started_releases_its_subscription() -> None:
    h = hub()
    app = wsgi_app(h, authorize=lambda _request, _channel: True)
    statuses: list[str] = []
    for query in ["channel=upload:main:x:*", "branch=main", "channel=upload:main:x"]:
        body = app(
            {"REQUEST_METHOD": "GET", "QUERY_STRING": query},
            lambda status, _headers: statuses.append(status),
        )
        assert h.stats().subscribers == 1
        body.close()  # type: ignore[attr-defined]  # the client left before the first byte
        assert h.stats().subscribers == 0
    assert statuses == ["200 OK"] * 3


def test_the_stream_still_skips_an_event_it_cannot_encode_from_another_feed() -> None:
    """Defence in depth: a host's own feed (not the fan-out) may hand the stream an event
    the model would have refused; the stream skips it, counts it and goes on."""
    forged = event("u", 1)
    object.__setattr__(forged, "upload_id", "u\r\nevent: done")  # past the validators
    fanout = FanOut()
    sub = fanout.subscribe(upload_channel("main", "u"))
    with sub._cond:
        sub._items.extend([(forged, 100, 0.0), (event("u", 2), 100, 0.0)])
    before = dropped_events()
    chunks = stream(sub, heartbeat=60)
    opening, second = next(chunks), next(chunks)
    chunks.close()
    assert opening.startswith(b"event: snapshot")
    assert second.startswith(b"id: u:2\n")
    assert dropped_events() == before + 1
    assert fanout.stats().subscribers == 0
