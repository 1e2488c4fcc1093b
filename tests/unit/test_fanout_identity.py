"""The fan-out core's delivery guarantees (issue 20 items 3, 4, 7; issue 21's forged seq):
dedup by identity with bounded memory, branch streams resumed exactly on another instance
from their cursor ids, and per-subscriber byte budgets."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transflow import (
    ConfigError,
    ProgressEvent,
    SubscriberLaggedError,
    Subscription,
    branch_channel,
    upload_channel,
)
from transflow._wire.model import MAX_SEQ
from transflow.streaming.apps import _last_event_id
from transflow.streaming.cursor import Cursor, cursor_chars, is_cursor, upload_key
from transflow.streaming.fanout import FanOut
from transflow.streaming.sse import stream

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)


def event(upload: str, seq: int | None, branch: str = "main", **fields: Any) -> ProgressEvent:
    fields.setdefault("step", "transcode")
    fields.setdefault("percent", 0 if seq is None else seq % 101)
    return ProgressEvent.create(
        "progress", upload_id=upload, branch=branch, timestamp=T0, seq=seq, **fields
    )


def take(sub: Subscription) -> list[tuple[str, int | None, str | None]]:
    """Everything buffered, as (upload, seq, the id a stream would send with it)."""
    out = []
    while (got := sub.get(timeout=0)) is not None:
        out.append((got.upload_id, got.seq, sub.last_event_id))
    return out


def ids(sub: Subscription) -> list[str]:
    return [f"{u}:{s}" for u, s, _ in take(sub)]


# -- item 3: dedup by identity --------------------------------------------------------------


def test_a_batch_entry_sent_again_after_its_successors_is_delivered_where_it_arrived() -> None:
    """SendMessageBatch of 1..5 where entry 2 failed once and was sent in the next call: the
    queue holds 1, 3, 4, 5, 2. A high-water mark took 2 for a redelivery."""
    fanout = FanOut()
    exact = fanout.subscribe(upload_channel("main", "u"))
    branch = fanout.subscribe(branch_channel("main"))
    for seq in (1, 3, 4, 5, 2):
        assert fanout.dispatch(event("u", seq)) == 2
    assert ids(exact) == ["u:1", "u:3", "u:4", "u:5", "u:2"]
    assert ids(branch) == ["u:1", "u:3", "u:4", "u:5", "u:2"]
    # The late event's snapshot position is where it arrived; a resume from the id before it
    # replays it, in arrival order.
    resumed = fanout.subscribe(upload_channel("main", "u"), last_event_id="u:4")
    assert ids(resumed) == ["u:5", "u:2"]
    assert fanout.stats().duplicates == 0


def test_an_exact_duplicate_is_dropped_and_counted() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(upload_channel("main", "u"))
    for seq in (1, 2, 2, 3, 1, 3):
        fanout.dispatch(event("u", seq))
    assert ids(sub) == ["u:1", "u:2", "u:3"]
    stats = fanout.stats()
    assert (stats.dispatched, stats.duplicates, stats.identities) == (3, 3, 3)


def test_a_forged_seq_of_2_53_minus_1_mutes_nothing() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(upload_channel("main", "u"))
    fanout.dispatch(event("u", 1))
    fanout.dispatch(event("u", MAX_SEQ))  # forged: one message with the largest seq
    for seq in range(2, 6):
        assert fanout.dispatch(event("u", seq)) == 1, "the upload was muted"
    assert ids(sub) == [f"u:{s}" for s in (1, MAX_SEQ, 2, 3, 4, 5)]
    assert fanout.subscribe(upload_channel("main", "u")).snapshot.last_seq == 5
    assert fanout.stats().duplicates == 0


arrivals = st.lists(
    st.tuples(st.sampled_from([f"u{i}" for i in range(8)]), st.integers(0, 40)), max_size=300
)


@settings(max_examples=120, deadline=None)
@given(
    stream_=arrivals,
    dedup_size=st.integers(1, 12),
    dedup_total=st.integers(1, 30),
    max_channels=st.integers(1, 8),
)
def test_identities_remembered_stay_within_their_bounds(
    stream_: list[tuple[str, int]], dedup_size: int, dedup_total: int, max_channels: int
) -> None:
    """Whatever arrives, the dedup memory holds at most dedup_size identities per channel and
    dedup_total in all; an identity still in its window is a duplicate, any other is new."""
    fanout = FanOut(max_channels=max_channels, dedup_size=dedup_size, dedup_total=dedup_total)
    for upload, seq in stream_:
        channel = upload_channel("main", upload)
        known = fanout._channels.get(channel)
        remembered = known is not None and seq in known.seen
        duplicates = fanout.stats().duplicates
        fanout.dispatch(event(upload, seq))
        stats = fanout.stats()
        assert stats.duplicates == duplicates + remembered
        held = [len(k.seen) for k in fanout._channels.values()]
        assert stats.identities == sum(held) <= dedup_total
        assert max(held) <= dedup_size
        assert stats.channels <= max_channels
    stats = fanout.stats()
    assert stats.dispatched + stats.duplicates == len(stream_)


@pytest.mark.parametrize("option", ["dedup_size", "dedup_total", "buffer_bytes"])
def test_dedup_and_buffer_budgets_out_of_range_are_config_errors(option: str) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be at least 1"):
        FanOut(**{option: 0})
    with pytest.raises(ConfigError, match="cursor_uploads must be an integer from 1 to 64"):
        FanOut(cursor_uploads=65)


# -- item 4: branch streams resume exactly on another instance ------------------------------


@st.composite
def two_interleavings(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The same events in two valid FIFO orders: each upload's own order kept (a late batch
    entry included: seqs need not rise), the interleaving of uploads differs."""
    uploads = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5, unique=True))
    own: dict[str, list[int]] = {}
    for upload in uploads:
        seqs = draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=8, unique=True))
        own[upload] = seqs  # any order: late entries arrive after higher seqs

    def interleave(seed: int) -> list[tuple[str, int]]:
        rnd = random.Random(seed)
        cursors = dict.fromkeys(own, 0)
        out = []
        while any(cursors[u] < len(own[u]) for u in own):
            upload = rnd.choice([u for u in own if cursors[u] < len(own[u])])
            out.append((upload, own[upload][cursors[upload]]))
            cursors[upload] += 1
        return out

    return interleave(draw(st.integers(0, 2**32))), interleave(draw(st.integers(0, 2**32)))


@settings(max_examples=150, deadline=None)
@given(orders=two_interleavings(), cursor_uploads=st.integers(5, 8))
def test_a_branch_stream_resumed_on_another_instance_at_any_cut_gets_each_event_once(
    orders: tuple[list[tuple[str, int]], list[tuple[str, int]]], cursor_uploads: int
) -> None:
    first_order, second_order = orders
    first, second = FanOut(cursor_uploads=cursor_uploads), FanOut(cursor_uploads=cursor_uploads)
    watching = first.subscribe(branch_channel("main"))
    for upload, seq in first_order:
        first.dispatch(event(upload, seq))
    for upload, seq in second_order:
        second.dispatch(event(upload, seq))
    seen = take(watching)
    assert [(u, s) for u, s, _ in seen] == first_order
    everything = sorted(first_order)
    for cut in range(1, len(seen) + 1):
        before = [(u, s) for u, s, _ in seen[:cut]]
        last_id = seen[cut - 1][2]
        assert last_id is not None
        assert is_cursor(last_id)
        assert ":" not in last_id
        assert _last_event_id(last_id, {}) == last_id  # the SSE layer lets it through
        resumed = second.subscribe(branch_channel("main"), last_event_id=last_id)
        after = [(u, s) for u, s, _ in take(resumed)]
        assert sorted(before + after) == everything, f"cut {cut}: {before} then {after}"
        # Each upload's own order is kept across the two.
        for upload in {u for u, _ in first_order}:
            mine = [s for u, s in before + after if u == upload]
            assert mine == [s for u, s in first_order if u == upload]


def test_a_new_branch_stream_resumed_elsewhere_does_not_replay_its_snapshot() -> None:
    """What the first snapshot held is in the cursor: a failover replays only what came
    after it, not the older events the other instance still buffers."""
    first, second = FanOut(), FanOut()
    for fanout in (first, second):
        for seq in (1, 2, 3):
            fanout.dispatch(event("old", seq))
    watching = first.subscribe(branch_channel("main"))
    for fanout in (first, second):
        fanout.dispatch(event("new", 1))
        fanout.dispatch(event("old", 4))
    second.dispatch(event("new", 2))  # the client has not got this one yet
    got = take(watching)
    assert [(u, s) for u, s, _ in got] == [("new", 1), ("old", 4)]
    resumed = second.subscribe(branch_channel("main"), last_event_id=got[0][2])
    assert ids(resumed) == ["old:4", "new:2"]


def test_a_cursor_is_short_ascii_and_past_its_uploads_falls_back_to_a_horizon() -> None:
    fanout = FanOut(cursor_uploads=3)
    sub = fanout.subscribe(branch_channel("main"))
    uploads = [f"upload-{'x' * 100}-{i}" for i in range(6)]  # long ids do not lengthen it
    for i, upload in enumerate(uploads):
        fanout.dispatch(event(upload, MAX_SEQ - 10 + i))
    got = take(sub)
    last_id = got[-1][2]
    assert last_id is not None
    assert len(last_id) <= cursor_chars(3) == 14 + 3 * 23
    assert last_id.isascii()
    assert not any(c in last_id for c in ":\r\n\x00 ")
    cursor = Cursor.parse(last_id, 3)
    assert cursor is not None
    assert list(cursor.seqs) == [upload_key(u) for u in uploads[3:]]
    assert cursor.horizon == MAX_SEQ - 10 + 2  # the newest upload it had to forget
    # Past the cursor's uploads: an upload it no longer lists resumes above the horizon.
    fanout.dispatch(event(uploads[0], MAX_SEQ - 8))  # at the horizon: taken as given
    fanout.dispatch(event(uploads[0], MAX_SEQ))
    assert ids(fanout.subscribe(branch_channel("main"), last_event_id=last_id)) == [
        f"{uploads[0]}:{MAX_SEQ}"
    ]
    assert cursor_chars(16) == 382


@pytest.mark.parametrize(
    "value",
    [
        "b1.-.AAAAAAAAAAAzzzzzzzzzzz",  # a seq past 2**53-1
        "b1.zzzzzzzzzzz",  # a horizon past it
        "b1.-.AAAAAAAAAAA",  # a key without its seq
        "b1..",
        "b1.-.",
        "b1.-:5",
        "b2.-",
        "b1.-" + ".AAAAAAAAAAA1" * 65,  # more uploads than any cursor lists
    ],
)
def test_what_we_never_send_is_no_cursor(value: str) -> None:
    assert Cursor.parse(value, 64) is None
    assert Cursor.parse("b1.-", 16) is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_last_event_id_resumes_or_is_ignored_never_raises(value: str) -> None:
    fanout = FanOut()
    fanout.dispatch(event("u", 1))
    for channel in (branch_channel("main"), upload_channel("main", "u")):
        fanout.subscribe(channel, last_event_id=value).close()


def test_the_stream_sends_a_branch_subscriptions_cursor_as_its_id() -> None:
    fanout = FanOut()
    sub = fanout.subscribe(branch_channel("main"))
    fanout.dispatch(event("u", 7))
    chunks = stream(sub, heartbeat=60)
    next(chunks)  # the snapshot
    chunk = next(chunks)
    chunks.close()
    expected = f"b1.-.{upload_key('u')}7"
    assert chunk.startswith(f"id: {expected}\n".encode())
    exact = fanout.subscribe(upload_channel("main", "u"), last_event_id="u:0")
    assert exact.last_event_id is None
    assert exact.get(timeout=0) is not None
    assert exact.last_event_id == "u:7"  # one upload's ids stay {uploadId}:{seq}


# -- item 7: per-subscriber byte budgets ------------------------------------------------------


def big(upload: str, seq: int, kib: int = 200) -> ProgressEvent:
    return event(upload, seq, message="x" * (kib * 1024))


def test_a_subscriber_over_its_byte_budget_is_cut_off_alone_and_resumes() -> None:
    """300 events of 200 KB to a client that stopped reading held 60 MB; with an 8 MiB
    budget it is cut off at 8 MiB, told to resume, and counted."""
    fanout = FanOut(replay_size=1000, replay_bytes=64 << 20, replay_total_bytes=64 << 20)
    channel = upload_channel("main", "big")
    stalled = fanout.subscribe(channel)
    reader = fanout.subscribe(channel)
    peak = 0
    for seq in range(1, 301):
        fanout.dispatch(big("big", seq))
        peak = max(peak, stalled.pending_bytes)
        assert reader.get(timeout=0) is not None
    assert peak <= 8 << 20
    assert stalled.pending_bytes == 0  # freed at the cut
    with pytest.raises(SubscriberLaggedError, match=r"bytes of events behind.*reconnect"):
        stalled.get(timeout=0)
    stats = fanout.stats()
    assert (stats.lagged, stats.lagged_bytes, stats.subscribers) == (1, 1, 1)
    assert reader.pending == 0
    # The browser resumes with its last id: the replay comes back within the budget.
    again = fanout.subscribe(channel, last_event_id="big:290")
    assert [e.seq for e in iter(lambda: again.get(timeout=0), None)] == list(range(291, 301))
    small = fanout.subscribe(channel, last_event_id="big:0", buffer_bytes=1 << 20)
    assert small.pending_bytes <= 1 << 20
    assert [e.seq for e in iter(lambda: small.get(timeout=0), None)][-1] == 300


def test_one_event_larger_than_the_budget_reaches_a_reader_that_is_caught_up() -> None:
    fanout = FanOut(buffer_bytes=1024)
    sub = fanout.subscribe(upload_channel("main", "u"))
    fanout.dispatch(big("u", 1, kib=4))
    assert sub.get(timeout=0) is not None
    fanout.dispatch(big("u", 2, kib=4))
    fanout.dispatch(big("u", 3, kib=4))  # now it is behind: over the budget
    with pytest.raises(SubscriberLaggedError):
        sub.get(timeout=0)
    assert fanout.stats().lagged_bytes == 1


def test_a_new_branch_stream_on_a_busy_branch_lists_its_newest_uploads() -> None:
    """More uploads in the snapshot than a cursor lists: the newest are listed, the others
    are below the horizon, so a failover replays none of their old events."""
    first, second = FanOut(cursor_uploads=2), FanOut(cursor_uploads=2)
    for fanout in (first, second):
        for upload, seq in (("a", 10), ("b", 20), ("c", 30), ("d", 40)):
            fanout.dispatch(event(upload, seq))
    watching = first.subscribe(branch_channel("main"))
    for fanout in (first, second):
        fanout.dispatch(event("c", 31))
        fanout.dispatch(event("e", 50))
    got = take(watching)
    assert [(u, s) for u, s, _ in got] == [("c", 31), ("e", 50)]
    cursor = Cursor.parse(got[0][2], 2)
    assert cursor is not None
    assert cursor.horizon == 20  # a and b at or below it; c and d listed
    assert dict(cursor.seqs) == {upload_key("d"): 40, upload_key("c"): 31}
    assert ids(second.subscribe(branch_channel("main"), last_event_id=got[0][2])) == ["e:50"]
