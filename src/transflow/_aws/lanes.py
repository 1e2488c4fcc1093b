"""The :class:`~transflow._aws.poller.QueuePoller`'s bookkeeping, without I/O or threads.

:class:`Lanes` knows which messages the poller holds, which lane each waits in (a FIFO
message group, or the message itself on a standard queue), which runs next, and what must be
deleted, released (with which visibility) or extended. The poller calls it with its own lock
held and does the SQS calls and the logging; the decisions are here so they can be tested
without an endpoint.

A held message moves ``queued`` -> ``running`` -> ``settling`` (deleted or released), or
``running`` -> ``abandoned`` (timed out, lease lost or stopped: its handler thread still runs
and its result is discarded).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from transflow._wire.limits import MAX_BATCH_ENTRIES, MAX_VISIBILITY_TIMEOUT

if TYPE_CHECKING:
    from transflow._aws.poller import Delivery
    from transflow._wire.messages import ReceivedMessage

__all__ = ["Held", "Lanes", "Outcome", "extension_seconds", "lane_key"]

_SAFETY = 5  # seconds kept clear of SQS's 12-hour limit

Outcome = Literal["succeeded", "failed", "abandoned"]
"""What became of a message whose handler returned (see :meth:`Lanes.finish`)."""


def extension_seconds(held_for: float, visibility_timeout: int) -> int:
    """How far a heartbeat may extend a message held for ``held_for`` seconds: the
    visibility timeout, but never past SQS's 12 hours since it was received (0: no more)."""
    left = MAX_VISIBILITY_TIMEOUT - _SAFETY - held_for
    return max(0, int(min(visibility_timeout, left)))


def lane_key(message: ReceivedMessage, fifo: bool) -> str:
    """The lane a message runs in: its message group on a FIFO queue; on a standard queue
    the message itself, so a copy redelivered while an abandoned handler still runs on it
    waits for that handler to return."""
    if fifo and message.group_id:
        return message.group_id
    return f"\0{message.message_id}"


@attrs.define(eq=False)
class Held:
    """One received message the poller is responsible for until it is deleted or released."""

    token: str
    delivery: Delivery
    received_at: float
    state: str = "queued"  # queued | running | abandoned | settling
    heartbeat: bool = True
    settled_at: float | None = None  # time.monotonic() when its delete was decided

    @property
    def message(self) -> ReceivedMessage:
        """The message as received."""
        return self.delivery.message


@attrs.define(eq=False)
class _Lane:
    pending: deque[Held] = attrs.field(factory=deque)
    current: Held | None = None


@attrs.define(eq=False)
class Lanes:
    """Held messages, their lanes, and the deletes and releases decided but not yet sent.

    Not thread-safe: the caller serialises every call (the poller holds its lock)."""

    capacity: int
    fifo: bool
    held: dict[str, Held] = attrs.field(init=False, factory=dict)
    to_delete: list[Held] = attrs.field(init=False, factory=list)
    to_release: list[tuple[Held, int]] = attrs.field(init=False, factory=list)
    unrun: int = attrs.field(init=False, default=0)
    """Messages released without their handler running (skipped, or not started)."""
    _lanes: dict[str, _Lane] = attrs.field(init=False, factory=dict)
    _tokens: Iterator[int] = attrs.field(init=False, factory=itertools.count)

    # -- receiving ------------------------------------------------------------------------

    def free(self) -> int:
        """How many more messages may be received."""
        return self.capacity - len(self.held)

    def accept(
        self, deliveries: Sequence[Delivery], now: float, *, stopping: bool = False
    ) -> list[str]:
        """Hold the messages of ``deliveries``, received at ``now``; returns the lanes that
        were idle and now need a runner. While ``stopping``, they are released at once
        (visibility 0)."""
        idle: list[str] = []
        for delivery in deliveries:
            message = delivery.message
            held = Held(str(next(self._tokens)), delivery, now)
            self.held[held.token] = held
            if stopping:
                # The long poll in flight when stop came: never started, so released.
                self.to_release.append((held, 0))
                self.unrun += 1
                continue
            key = lane_key(message, self.fifo)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
                idle.append(key)
            lane.pending.append(held)
        return idle

    # -- running --------------------------------------------------------------------------

    def next(self, key: str, now: float, timeout: float | None) -> Held | None:
        """The lane's next message, now running (with a deadline ``timeout`` seconds from
        ``now``); None when the lane is empty, which ends it: its runner returns."""
        lane = self._lanes[key]
        if not lane.pending:
            del self._lanes[key]
            return None
        held = lane.pending.popleft()
        lane.current = held
        held.state = "running"
        if timeout is not None:
            held.delivery.deadline = now + timeout
        return held

    def finish(self, key: str, held: Held, ok: bool, delay: Callable[[], int]) -> Outcome:
        """Its handler returned: delete on success; on failure release it after ``delay()``
        seconds and the rest of its lane at once, so no later message of a FIFO group
        overtakes it. An abandoned delivery was settled already: it is only forgotten."""
        lane = self._lanes[key]
        lane.current = None
        if held.state == "abandoned":
            self.held.pop(held.token, None)
            return "abandoned"
        held.state, held.heartbeat = "settling", False
        if ok:
            self.to_delete.append(held)
            return "succeeded"
        self.to_release.append((held, delay()))
        self._skip_rest(lane)
        return "failed"

    def _skip_rest(self, lane: _Lane) -> None:
        while lane.pending:
            skipped = lane.pending.popleft()
            skipped.state, skipped.heartbeat = "settling", False
            self.to_release.append((skipped, 0))
            self.unrun += 1

    def running(self) -> list[Held]:
        """Messages whose handler runs and counts (abandoned ones still hold a thread)."""
        return [h for h in self.held.values() if h.state in ("running", "abandoned")]

    def overdue(self, now: float) -> list[Held]:
        """Running messages past their handler deadline."""
        found = []
        for lane in self._lanes.values():
            held = lane.current
            deadline = held.delivery.deadline if held else None
            if held and held.state == "running" and deadline is not None and now >= deadline:
                found.append(held)
        return found

    def abandon(self, held: Held, delay: int | None) -> None:
        """Give up on a running delivery: cancel it, stop its heartbeat, release its message
        after ``delay`` seconds (None: the lease is gone, nothing to release) and the rest of
        its lane at once."""
        held.state, held.heartbeat = "abandoned", False
        held.delivery.cancelled.set()
        if delay is not None:
            # A copy: the running thread keeps its own entry in `held` until it returns.
            self.to_release.append((Held(f"{held.token}r", held.delivery, held.received_at), delay))
        lane = next((ln for ln in self._lanes.values() if ln.current is held), None)
        if lane is not None:
            self._skip_rest(lane)

    def lose(self, held: Held) -> None:
        """The poller no longer owns ``held``'s message: abandon it if running, forget it if
        still queued."""
        if held.state == "running":
            self.abandon(held, None)
        elif held.state == "queued":
            held.heartbeat = False
            for lane in self._lanes.values():
                if held in lane.pending:
                    lane.pending.remove(held)
            self.held.pop(held.token, None)

    # -- heartbeats -----------------------------------------------------------------------

    def expiring(self, now: float) -> list[Held]:
        """Messages still beating whose 12 hours of visibility are used up."""
        beating = (h for h in self.held.values() if h.heartbeat)
        return [h for h in beating if extension_seconds(now - h.received_at, 1) == 0]

    def extensions(self, now: float, visibility_timeout: int) -> list[tuple[Held, int]]:
        """Each message still beating, and how far to extend its visibility."""
        return [
            (h, extension_seconds(now - h.received_at, visibility_timeout))
            for h in self.held.values()
            if h.heartbeat
        ]

    # -- settling -------------------------------------------------------------------------

    def take_settlements(
        self, *, deletes: bool = True, whole_batches: bool = False
    ) -> tuple[list[Held], list[tuple[Held, int]]]:
        """The releases decided since the last call, and (unless ``deletes`` is False: the
        poller is gathering them into fuller calls) the deletes, to send now: with
        ``whole_batches``, only the oldest tens (the rest waits for more)."""
        taken: list[Held] = []
        if deletes:
            cut = len(self.to_delete)
            if whole_batches:
                cut -= cut % MAX_BATCH_ENTRIES
            taken, self.to_delete = self.to_delete[:cut], self.to_delete[cut:]
        releases, self.to_release = self.to_release, []
        return taken, releases

    def deleted(self, items: Sequence[Held]) -> None:
        """Their delete was sent (whether or not SQS took it: a message left behind comes
        back and handlers are idempotent)."""
        for held in items:
            self.held.pop(held.token, None)

    def released(self, items: Sequence[tuple[Held, int]]) -> None:
        """Their release was sent; an abandoned delivery stays held until its thread ends."""
        for held, _delay in items:
            if held.state != "abandoned":
                self.held.pop(held.token, None)

    def release_pending(self) -> None:
        """Release every message not started (at a stop)."""
        for lane in self._lanes.values():
            self._skip_rest(lane)

    def cancel_running(self) -> list[Held]:
        """Abandon every running delivery without releasing it (at a stop, after the drain
        timeout: its message returns when its visibility runs out); returns them."""
        late = [h for h in self.held.values() if h.state == "running"]
        for held in late:
            held.state, held.heartbeat = "abandoned", False
            held.delivery.cancelled.set()
        return late
