"""The hub's fan-out core (transflow.streaming.fanout) and its option checks, without an
endpoint: dispatch, dedup, replay and Last-Event-ID resume, lag, close, the channel bound."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fanout import NoClient, drain, event, seqs
from transflow import (
    ChannelError,
    ConfigError,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    QueuePoller,
    ReceivedMessage,
    SubscriberLaggedError,
    Subscription,
    SubscriptionClosedError,
    SubscriptionDeniedError,
    UploadState,
    branch_channel,
    poller_client_config,
    upload_channel,
)
from transflow.streaming.fanout import FanOut, split_event_id


def test_split_event_id() -> None:
    assert split_event_id("abc:4") == ("abc", 4)
    assert split_event_id("a:b:12") == ("a:b", 12)
    for bad in (None, "", "abc", "abc:", "abc:x", "abc:-1"):
        assert split_event_id(bad) is None


# -- dispatch and dedup ---------------------------------------------------------------------

deliveries = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.integers(1, 30)), max_size=120
)


@settings(max_examples=150, deadline=None)
@given(deliveries)
def test_each_subscriber_gets_each_new_seq_once_in_arrival_order(
    arrivals: list[tuple[str, int]],
) -> None:
    """Whatever the queue delivers (redeliveries, anything out of order), an event reaches the
    subscribers iff its identity (channel and seq) was not dispatched before, in the order
    it arrived."""
    fanout = FanOut(buffer_size=1000)
    exact = {u: fanout.subscribe(upload_channel("main", u)) for u in ("u1", "u2", "u3")}
    branch = fanout.subscribe(branch_channel("main"))
    other_branch = fanout.subscribe(branch_channel("dev"))
    expected: dict[str, list[int]] = {"u1": [], "u2": [], "u3": []}
    in_order: list[tuple[str, int]] = []
    for upload, seq in arrivals:
        got = fanout.dispatch(event(upload, seq))
        new = seq not in expected[upload]
        assert got == (2 if new else 0)
        if new:
            expected[upload].append(seq)
            in_order.append((upload, seq))
    for upload, sub in exact.items():
        assert seqs(drain(sub)) == expected[upload]
    assert [(e.upload_id, e.seq) for e in drain(branch)] == in_order
    assert drain(other_branch) == []
    stats = fanout.stats()
    assert stats.dispatched == len(in_order)
    assert stats.duplicates == len(arrivals) - len(in_order)
    assert stats.delivered == 2 * len(in_order)
    assert (stats.subscribers, stats.lagged, stats.malformed) == (5, 0, 0)
    assert stats.channels == len({u for u, _ in arrivals})


def test_events_without_a_seq_are_never_taken_for_duplicates() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(upload_channel("main", "u"))
    for _ in range(3):
        assert fanout.dispatch(event("u", None)) == 1
    assert len(drain(sub)) == 3
    assert fanout.stats().duplicates == 0


# -- replay and resume ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 40), replay_size=st.integers(0, 15), resume=st.integers(0, 45))
def test_resume_replays_what_came_after_last_event_id_and_is_still_buffered(
    count: int, replay_size: int, resume: int
) -> None:
    fanout = FanOut(replay_size=replay_size)
    channel = upload_channel("main", "u")
    for seq in range(1, count + 1):
        fanout.dispatch(event("u", seq))
    sub = fanout.subscribe(channel, last_event_id=f"u:{resume}")
    kept = list(range(max(1, count - replay_size + 1), count + 1))
    assert seqs(drain(sub)) == [s for s in kept if s > resume]
    # The snapshot has every event folded in, replayed or not.
    assert sub.snapshot.last_seq == (count or None)
    # Another upload's id, or no id: no replay, the snapshot only.
    assert drain(fanout.subscribe(channel, last_event_id=f"v:{resume}")) == []
    assert drain(fanout.subscribe(channel)) == []


def test_a_replay_longer_than_the_subscriber_buffer_keeps_the_newest() -> None:
    fanout = FanOut()
    for seq in range(1, 21):
        fanout.dispatch(event("u", seq))
    sub = fanout.subscribe(upload_channel("main", "u"), "u:0", buffer_size=5)
    assert seqs(drain(sub)) == [16, 17, 18, 19, 20]


@settings(max_examples=100, deadline=None)
@given(
    order=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=40),
    pick=st.integers(0, 10**6),
)
def test_branch_resume_replays_across_uploads_in_arrival_order(order: list[str], pick: int) -> None:
    fanout = FanOut()
    next_seq = {"a": 0, "b": 0, "c": 0}
    sent: list[str] = []
    for upload in order:
        next_seq[upload] += 1
        fanout.dispatch(event(upload, next_seq[upload]))
        fanout.dispatch(event(upload, 1, branch="dev"))  # another branch: never replayed
        sent.append(f"{upload}:{next_seq[upload]}")
    last = sent[pick % len(sent)]
    sub = fanout.subscribe(branch_channel("main"), last_event_id=last)
    assert [e.event_id for e in drain(sub)] == sent[sent.index(last) + 1 :]
    assert {s.upload_id for s in sub.snapshots} == set(order)
    # An id the buffers no longer hold: nothing replayed, the snapshots carry the state.
    assert drain(fanout.subscribe(branch_channel("main"), last_event_id="a:999")) == []


def test_snapshot_then_live() -> None:
    fanout = FanOut()
    channel = upload_channel("main", "abc")
    first = fanout.subscribe(channel)
    assert first.snapshot.state is UploadState.QUEUED
    fanout.dispatch(event("abc", 1, type="start", template_id="audio"))
    fanout.dispatch(event("abc", 2, type="step:start", step="transcode"))
    late = fanout.subscribe(channel)
    assert late.snapshot.state is UploadState.PROCESSING
    assert late.snapshot.template_id == "audio"
    assert drain(late) == []
    fanout.dispatch(event("abc", 3, type="done"))
    assert seqs(drain(first)) == [1, 2, 3]
    assert seqs(drain(late)) == [3]
    assert fanout.subscribe(channel).snapshot.state is UploadState.COMPLETED


# -- lag, close and bounds ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(buffer=st.integers(1, 20), sent=st.integers(0, 40))
def test_a_subscriber_more_than_its_buffer_behind_is_cut_off_alone(buffer: int, sent: int) -> None:
    fanout = FanOut()
    channel = upload_channel("main", "big")
    slow = fanout.subscribe(channel, buffer_size=buffer)
    fast = fanout.subscribe(channel, buffer_size=100)
    for seq in range(1, sent + 1):
        fanout.dispatch(event("big", seq))
    assert seqs(drain(fast)) == list(range(1, sent + 1))
    if sent > buffer:
        with pytest.raises(SubscriberLaggedError, match="reconnect with the last event id"):
            slow.get(timeout=0)
        assert slow.closed
        assert fanout.stats().lagged == 1
        assert fanout.stats().subscribers == 1
        # Resuming where it was: the replay buffer has the rest.
        again = fanout.subscribe(channel, last_event_id="big:0", buffer_size=100)
        assert seqs(drain(again)) == list(range(1, sent + 1))
    else:
        assert seqs(drain(slow)) == list(range(1, sent + 1))
        assert fanout.stats().lagged == 0


def test_close_ends_every_subscription_after_what_it_buffered() -> None:
    fanout = FanOut()
    exact = fanout.subscribe(upload_channel("main", "u"))
    pattern = fanout.subscribe(branch_channel("main"))
    fanout.dispatch(event("u", 1))
    fanout.close("the progress hub stopped")
    assert fanout.stats().subscribers == 0
    for sub in (exact, pattern):
        assert seqs(drain_until_closed(sub)) == [1]
    with pytest.raises(SubscriptionClosedError, match="hub stopped; upload:main:u ended"):
        exact.get(timeout=0)
    with pytest.raises(SubscriptionClosedError, match="has stopped"):
        fanout.subscribe(upload_channel("main", "u"))


def drain_until_closed(sub: Subscription) -> list[ProgressEvent]:
    out: list[ProgressEvent] = []
    while True:
        try:
            got = sub.get(timeout=0)
        except SubscriptionClosedError:
            return out
        assert got is not None, "a closed subscription should raise once drained"
        out.append(got)


def test_a_closed_subscription_gets_nothing_more_and_iteration_ends() -> None:
    fanout = FanOut()
    with fanout.subscribe(upload_channel("main", "u")) as sub:
        fanout.dispatch(event("u", 1))
    assert fanout.stats().subscribers == 0
    assert fanout.dispatch(event("u", 2)) == 0
    assert seqs(list(sub)) == [1]


def test_only_the_most_recently_used_channels_are_remembered() -> None:
    fanout = FanOut(max_channels=2)
    fanout.dispatch(event("a", 1))
    fanout.dispatch(event("b", 1))
    fanout.dispatch(event("a", 2))  # a is now the most recent
    fanout.dispatch(event("c", 1))  # b is forgotten
    assert fanout.stats().channels == 2
    assert fanout.subscribe(upload_channel("main", "b")).snapshot.last_seq is None
    assert fanout.subscribe(upload_channel("main", "a")).snapshot.last_seq == 2


def test_get_waits_for_an_event_from_another_thread_and_aget_on_the_loop() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(upload_channel("main", "u"))
    assert sub.get(timeout=0.01) is None
    timer = threading.Timer(0.05, fanout.dispatch, [event("u", 1)])
    timer.start()
    got = sub.get(timeout=10)
    timer.join()
    assert got is not None
    assert got.seq == 1

    async def read() -> list[int | None]:
        assert await sub.aget(timeout=0.01) is None
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, fanout.dispatch, event("u", 2))
        got = await sub.aget(timeout=10)
        return [got.seq if got else None]

    assert asyncio.run(read()) == [2]


# -- the hub without an endpoint ------------------------------------------------------------


def test_the_hub_parses_messages_and_hands_events_to_its_fan_out() -> None:
    def authorize(principal: Any, channel: str) -> bool:
        return principal == "alice" and channel.startswith("upload:main:")

    hub = ProgressHub(NoClient(), ProgressQueue("https://queue/progress.fifo"), authorize=authorize)  # type: ignore[arg-type]
    sub = hub.subscribe(upload_channel("main", "u"), principal="alice")
    with pytest.raises(SubscriptionDeniedError):
        hub.subscribe(upload_channel("main", "u"), principal="mallory")
    with pytest.raises(SubscriptionDeniedError):
        hub.subscribe(branch_channel("dev"), principal="alice")
    for bad in ["", "upload:main", "uploads:main:x", "upload::x", "upload:main:"]:
        with pytest.raises(ChannelError, match="not a progress channel"):
            hub.subscribe(bad, principal="alice")
    handle = hub.poller.handler  # what the poller calls for each message
    for i, body in enumerate(
        [
            event("u", 1).to_json(),
            "{not json",
            event("u", 1).to_json(),  # a redelivery
            event("u", 2).to_json(),
            ProgressEvent.from_dict(
                {**event("u", 3).to_dict(), "channel": "upload:main:*"}
            ).to_json(),
        ]
    ):
        handle(ReceivedMessage(f"m{i}", f"rh{i}", body))
    assert seqs(drain(sub)) == [1, 2]
    stats = hub.stats()
    assert (stats.dispatched, stats.duplicates, stats.malformed) == (2, 1, 2)
    assert stats.poller.state == "new"
    assert hub.stop()
    with pytest.raises(SubscriptionClosedError):
        hub.subscribe(upload_channel("main", "u"), principal="alice")


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("buffer_size", 0, "buffer_size must be at least 1, not 0"),
        ("buffer_bytes", 0, "buffer_bytes must be at least 1, not 0"),
        ("replay_size", -1, "replay_size must be at least 0"),
        ("max_channels", 0, "max_channels must be at least 1"),
        ("concurrency", 0, "concurrency must be at least 1"),
        ("max_in_flight", 0, "max_in_flight must be at least 1"),
        ("wait_time_seconds", 21, "wait_time_seconds must be from 0 to 20"),
        ("visibility_timeout", 0, "visibility_timeout must be from 1 to 43200"),
        ("visibility_timeout", 43_201, "visibility_timeout must be from 1 to 43200 \\(12 hours\\)"),
        ("drain_timeout", 0, "drain_timeout must be positive"),
    ],
)
def test_hub_options_out_of_range_are_config_errors(option: str, value: int, says: str) -> None:
    with pytest.raises(ConfigError, match=f"ProgressHub {says}"):
        ProgressHub(NoClient(), ProgressQueue("url"), **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("concurrency", 0, "concurrency must be positive"),
        ("max_in_flight", -1, "max_in_flight must be positive"),
        ("wait_time_seconds", -1, "wait_time_seconds must be from 0 to 20"),
        ("wait_time_seconds", 21, "wait_time_seconds must be from 0 to 20"),
        ("visibility_timeout", 43_201, "visibility_timeout must be from 1 to 43200"),
        ("heartbeat_interval", 0, "heartbeat_interval must be positive"),
        ("handler_timeout", 0, "handler_timeout must be positive"),
        ("drain_timeout", -1, "drain_timeout must be positive"),
        ("error_backoff_max", 0, "error_backoff_max must be positive"),
    ],
)
def test_poller_options_out_of_range_are_config_errors(option: str, value: int, says: str) -> None:
    with pytest.raises(ConfigError, match=f"QueuePoller {says}"):
        QueuePoller(NoClient(), "url", lambda _m: None, **{option: value})  # type: ignore[arg-type]


def test_a_client_pool_too_small_for_a_poller_is_a_config_error() -> None:
    config = poller_client_config(8)
    assert config.max_pool_connections == 11  # type: ignore[attr-defined]

    class Small:
        class meta:
            class config:
                max_pool_connections = 1

    for make in (
        lambda: QueuePoller(Small(), "url", lambda _m: None),  # type: ignore[arg-type]
        lambda: ProgressHub(Small(), ProgressQueue("url")),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError, match="max_pool_connections is 1"):
            make()
