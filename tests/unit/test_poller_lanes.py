"""The QueuePoller's lane decisions (transflow._aws.lanes), without an endpoint or threads."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from transflow._aws.lanes import Held, Lanes, extension_seconds, lane_key
from transflow._aws.poller import Delivery
from transflow._wire.limits import MAX_VISIBILITY_TIMEOUT
from transflow._wire.messages import ReceivedMessage


def msg(body: str, group: str | None = None, mid: str | None = None) -> ReceivedMessage:
    attributes = {"MessageGroupId": group} if group is not None else {}
    return ReceivedMessage(mid or f"id-{body}", f"rh-{body}", body, attributes)


def deliveries(*messages: ReceivedMessage) -> list[Delivery]:
    return [Delivery(m) for m in messages]


def bodies(items: list[Held] | list[tuple[Held, int]]) -> list[str]:
    return [(i[0] if isinstance(i, tuple) else i).message.body for i in items]


def test_lane_key_is_the_group_on_fifo_and_the_message_otherwise() -> None:
    assert lane_key(msg("a", "g"), fifo=True) == "g"
    assert lane_key(msg("a", "g"), fifo=False) == "\0id-a"
    assert lane_key(msg("a"), fifo=True) == "\0id-a"


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[ReceivedMessage], list[int], list[bool], int]:
    groups = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=40))
    messages = [msg(f"{g}{i:02d}", g) for i, g in enumerate(groups)]
    # Which runnable lane steps next, and which handler calls fail.
    picks = draw(st.lists(st.integers(0, 10**6), min_size=200, max_size=200))
    fails = draw(st.lists(st.booleans(), min_size=len(messages) * 2, max_size=len(messages) * 2))
    capacity = draw(st.integers(1, 12))
    return messages, picks, fails, capacity


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_groups_run_one_at_a_time_in_order_and_every_message_is_settled_once(
    scenario: tuple[list[ReceivedMessage], list[int], list[bool], int],
) -> None:
    messages, picks, fails, capacity = scenario
    lanes = Lanes(capacity, fifo=True)
    runners: list[str] = []  # lanes with a runner, as the poller's pool would run them
    queue = list(messages)
    started: list[str] = []
    settled: Counter[str] = Counter()
    outcomes: dict[str, str] = {}
    released_after_failure: dict[str, list[str]] = {}
    accepted_at: dict[str, int] = {}
    failed_at: dict[str, int] = {}  # group -> step of its last failure
    failures = iter(fails)
    for step, pick in enumerate(picks):
        if queue and lanes.free() > 0 and (not runners or pick % 3 == 0):
            batch, queue = queue[: min(lanes.free(), 10)], queue[min(lanes.free(), 10) :]
            accepted_at.update((m.body, step) for m in batch)
            for key in lanes.accept(deliveries(*batch), now=0.0):
                assert key not in runners, "a lane got a second runner"
                runners.append(key)
            assert lanes.free() >= 0
        elif runners:
            key = runners[pick % len(runners)]
            held = lanes.next(key, now=0.0, timeout=None)
            if held is None:
                runners.remove(key)
                continue
            running = [h for h in lanes.held.values() if h.state == "running"]
            assert [h.message.group_id for h in running].count(key) == 1
            started.append(held.message.body)
            # FIFO: what was held behind a failed message went back to the queue with it.
            assert accepted_at[held.message.body] > failed_at.get(key, -1), "overtook a failure"
            ok = not next(failures, False)
            outcome = lanes.finish(key, held, ok, lambda: 9)
            outcomes[held.message.body] = outcome
            if outcome == "failed":
                failed_at[key] = step
                released_after_failure[held.message.body] = bodies(lanes.to_release)
        deletes, releases = lanes.take_settlements()
        settled.update(bodies(deletes) + bodies(releases))
        lanes.deleted(deletes)
        lanes.released(releases)
        assert all(
            delay == (9 if outcomes.get(h.message.body) == "failed" else 0) for h, delay in releases
        )
    received = [m.body for m in messages if m not in queue]
    for group in "abcd":
        mine = [b for b in started if b[0] == group]
        assert mine == sorted(mine), f"group {group} ran out of order"
    for failed, released in released_after_failure.items():
        # The failed message, then the rest of its group not yet started, in order.
        rest = [b for b in released if b[0] == failed[0]]
        assert rest[0] == failed
        assert rest == sorted(rest)
        assert not set(rest[1:]) & set(started)
    # Whatever finished left the books; nothing was deleted or released twice.
    assert set(settled.values()) <= {1}
    unsettled = {h.message.body for h in lanes.held.values()}
    assert set(settled) | unsettled == set(received)
    assert not set(settled) & unsettled
    assert lanes.free() == capacity - len(unsettled)


def test_a_stopping_poller_releases_what_the_last_poll_brings() -> None:
    lanes = Lanes(10, fifo=True)
    assert lanes.accept(deliveries(msg("a1", "a"), msg("b1", "b")), now=0.0, stopping=True) == []
    deletes, releases = lanes.take_settlements()
    assert deletes == []
    assert [(h.message.body, d) for h, d in releases] == [("a1", 0), ("b1", 0)]
    lanes.released(releases)
    assert lanes.held == {}


def test_a_timed_out_handler_is_abandoned_and_its_group_released() -> None:
    lanes = Lanes(10, fifo=True)
    group = deliveries(msg("a1", "a"), msg("a2", "a"), msg("a3", "a"))
    assert lanes.accept(group, now=0.0) == ["a"]
    held = lanes.next("a", now=100.0, timeout=2.0)
    assert held is not None
    assert held.delivery.deadline == 102.0
    assert lanes.overdue(101.9) == []
    assert lanes.overdue(102.0) == [held]
    lanes.abandon(held, 30)
    assert held.delivery.is_cancelled
    assert not held.heartbeat
    assert lanes.overdue(200.0) == []
    _deletes, releases = lanes.take_settlements()
    assert [(h.message.body, d) for h, d in releases] == [("a1", 30), ("a2", 0), ("a3", 0)]
    lanes.released(releases)
    # The handler's thread still runs: it counts against capacity until it returns.
    assert list(lanes.held.values()) == [held]
    assert lanes.running() == [held]
    assert lanes.free() == 9
    assert lanes.finish("a", held, True, lambda: 0) == "abandoned"  # its result is discarded
    assert lanes.take_settlements() == ([], [])
    assert lanes.held == {}
    assert lanes.next("a", now=0.0, timeout=None) is None


def test_a_redelivered_copy_waits_for_the_abandoned_handler_of_its_message() -> None:
    lanes = Lanes(10, fifo=False)
    key = lane_key(msg("m"), fifo=False)
    assert lanes.accept(deliveries(msg("m")), now=0.0) == [key]
    first = lanes.next(key, now=0.0, timeout=1.0)
    assert first is not None
    lanes.abandon(first, 0)
    assert lanes.accept(deliveries(msg("m")), now=5.0) == []  # no second runner on the same message
    assert lanes.finish(key, first, False, lambda: 0) == "abandoned"
    again = lanes.next(key, now=5.0, timeout=None)
    assert again is not None
    assert again is not first
    assert again.state == "running"


def test_losing_a_lease() -> None:
    lanes = Lanes(10, fifo=True)
    lanes.accept(deliveries(msg("a1", "a"), msg("a2", "a"), msg("a3", "a")), now=0.0)
    running = lanes.next("a", now=0.0, timeout=None)
    assert running is not None
    queued = lanes.held["1"]  # a2
    lanes.lose(queued)  # queued: forgotten, never run
    assert "1" not in lanes.held
    assert lanes.take_settlements() == ([], [])
    lanes.lose(running)  # running: abandoned, nothing to release for it; the rest released
    assert running.delivery.is_cancelled
    _, releases = lanes.take_settlements()
    assert [(h.message.body, d) for h, d in releases] == [("a3", 0)]


def test_heartbeats_extend_only_what_is_held_and_stop_at_twelve_hours() -> None:
    lanes = Lanes(10, fifo=True)
    lanes.accept(deliveries(msg("a1", "a"), msg("b1", "b"), msg("c1", "c")), now=0.0)
    a1 = lanes.next("a", now=0.0, timeout=None)
    assert a1 is not None
    lanes.finish("a", a1, True, lambda: 0)  # settling: its delete is on the way
    assert {h.message.body: s for h, s in lanes.extensions(10.0, 30)} == {"b1": 30, "c1": 30}
    late = MAX_VISIBILITY_TIMEOUT - 20.0
    assert {s for _, s in lanes.extensions(late, 30)} == {15}
    assert lanes.expiring(late) == []
    assert {h.message.body for h in lanes.expiring(MAX_VISIBILITY_TIMEOUT - 5.0)} == {"b1", "c1"}
    assert extension_seconds(0.0, 30) == 30
    assert extension_seconds(MAX_VISIBILITY_TIMEOUT, 30) == 0


def test_stop_releases_what_never_started_and_cancels_what_outlives_the_drain() -> None:
    lanes = Lanes(10, fifo=True)
    lanes.accept(deliveries(msg("a1", "a"), msg("a2", "a"), msg("b1", "b")), now=0.0)
    a1 = lanes.next("a", now=0.0, timeout=None)
    lanes.release_pending()
    _, releases = lanes.take_settlements()
    assert sorted(bodies(releases)) == ["a2", "b1"]
    lanes.released(releases)
    assert lanes.cancel_running() == [a1]
    assert a1 is not None
    assert a1.delivery.is_cancelled
    assert a1.state == "abandoned"
