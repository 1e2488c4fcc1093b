"""What an event loop holds for the subscriptions waiting on it: one wake-up per dispatch, one
timer, whatever the number of subscribers.

A :class:`~transflow.streaming.fanout.Subscription` waiting in ``aget`` parks a future here.
A dispatch (on the hub's thread) that gives events to many waiting subscribers of one loop
crosses into that loop once (one ``call_soon_threadsafe``), and dispatches that come before
the loop drained its queue share it; the loop then resolves every future that was woken, in
the order they were woken, :data:`CHUNK` per callback (the writes of one dispatch are never
held up by a later one's). Timeouts (the
streams' heartbeats) wait in a timer wheel of :data:`SLOT`-second slots behind one timer
handle: each tick takes only the slot that is due, so streams whose deadlines are spread
over the heartbeat period (the streams of :func:`~transflow.streaming.sse.astream` are) are
woken a few at a time, never all in one callback. Each subscriber has at most one live entry
in the wheel. A :class:`Beat` in the wheel is a write the tick makes itself (a stream's
heartbeat on a server whose ``send`` writes at once), and a woken subscription with a
``_direct`` writer has its events written by the wake-up itself: the stream's task never
wakes for either.
The lateness of the ticks is the loop's lag (:func:`loop_lag`). Nothing here starts a task
or a thread.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from transflow.streaming.latency import Window

if TYPE_CHECKING:
    # Types only: a WSGI host that imports the fan-out never loads asyncio.
    import asyncio

__all__ = ["CHUNK", "SLOT", "Beat", "LoopWaiters", "Parked", "loop_lag", "waiters_of"]

log = logging.getLogger(__name__)

SLOT = 0.05
"""Seconds per slot of the timer wheel: a timeout ends at most this much late, and the streams
due within one slot are woken by one tick (10,000 streams with 15 s heartbeats spread over
the period: about 33 per tick)."""

CHUNK = 32
"""Futures resolved per loop callback: each wakes a stream that then writes, so a dispatch or
a tick that wakes thousands lets the loop's other I/O (and its timers) run between chunks
instead of holding the loop for the whole burst."""

_EARLY = 1e-6

_LAG = Window()


def loop_lag() -> Window:
    """How late the ticks of this process's event loops ran (seconds), the recent ones."""
    return _LAG


class Parked(Protocol):
    """What parks here: the subscription side of a wait (or a :class:`Beat`)."""

    @property
    def _waiter(self) -> asyncio.Future[None] | None: ...

    # And optionally ``_direct: Callable[[], bool] | None`` (see Subscription).

    _deadline: float | None
    _slot: int | None


@attrs.define(eq=False)
class Beat:
    """A callback the loop's tick runs every ``period`` seconds from ``first`` (the loop's
    time), in the wheel with the waits: a stream's heartbeat written by the tick itself,
    without waking the stream's task. ``write`` returns False (or raises: logged) to stop.
    """

    waiters: LoopWaiters
    period: float
    write: Callable[[], bool]
    first: float
    _deadline: float | None = attrs.field(init=False, default=None)
    _slot: int | None = attrs.field(init=False, default=None)
    _waiter: None = attrs.field(init=False, default=None)  # what a wait has; a beat has none

    def start(self) -> Beat:
        self.waiters.arm_at(self, self.first)
        return self

    def cancel(self) -> None:
        """No more calls (its entry in the wheel is dropped when it comes up)."""
        self._deadline = None

    def fire(self) -> None:
        """Run ``write`` (the tick calls it when the beat is due) and book the next beat."""
        due = self._deadline
        if due is None:
            return
        try:
            again = self.write()
        except Exception:  # one stream's failure must not break the tick
            log.exception("SSE: a heartbeat write failed; its stream ends")
            again = False
        if not again or self._deadline is None:
            self._deadline = None
            return
        self.waiters.heartbeats += 1
        now = self.waiters.loop.time()
        due += self.period
        self.waiters.arm_at(self, due if due > now else now + self.period)


@attrs.define(eq=False)
class LoopWaiters:
    """The waiting subscriptions of one event loop."""

    loop: asyncio.AbstractEventLoop
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    # Woken and not yet resolved, oldest first: one queue for every dispatch, drained
    # CHUNK at a time by one chain of loop callbacks, so a later dispatch's writes wait
    # behind an earlier one's instead of taking turns with them (which would delay the
    # earlier one's last writes by the later one's).
    _woken: deque[Parked] = attrs.field(init=False, factory=deque)
    _scheduled: bool = attrs.field(init=False, default=False)  # a drain is on its way
    # slot number -> the subscriptions whose live entry is in it; the numbers in a heap.
    _slots: dict[int, list[Parked]] = attrs.field(init=False, factory=dict)
    _order: list[int] = attrs.field(init=False, factory=list)
    _timer: asyncio.TimerHandle | None = attrs.field(init=False, default=None)
    _timer_slot: float = attrs.field(init=False, default=math.inf)  # its slot number
    wakeups: int = attrs.field(init=False, default=0)
    """Times another thread crossed into the loop to wake subscribers."""
    ticks: int = attrs.field(init=False, default=0)
    """Times the one timer fired."""
    resolved: int = attrs.field(init=False, default=0)
    """Futures resolved (by a dispatch or a deadline)."""
    callbacks: int = attrs.field(init=False, default=0)
    """Loop callbacks that resolved them (at most :data:`CHUNK` each)."""
    most_per_callback: int = attrs.field(init=False, default=0)
    """The most futures one loop callback resolved (and heartbeats it wrote)."""
    most_per_tick: int = attrs.field(init=False, default=0)
    """The most deadlines one tick found due."""
    heartbeats: int = attrs.field(init=False, default=0)
    """Heartbeats the ticks wrote themselves (:class:`Beat`), no task woken."""
    direct_writes: int = attrs.field(init=False, default=0)
    """Wake-ups whose events were written on the loop itself, no task woken (a
    subscription's ``_direct``)."""

    # -- any thread ---------------------------------------------------------------------------

    def wake(self, parked: Parked) -> None:
        """Resolve ``parked``'s future on the loop, soon, after every one woken before it;
        one crossing for all woken while the loop has not drained the queue."""
        with self._lock:
            self._woken.append(parked)
            if self._scheduled:
                return
            self._scheduled = True
            self.wakeups += 1
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop closed under us: nobody is waiting any more
            with self._lock:
                self._woken.clear()
                self._scheduled = False

    def _drain(self) -> None:
        # The oldest CHUNK; the next drain goes behind the loop's other ready callbacks
        # (its I/O, the ticks), and is booked before these run so a failure cannot stall it.
        woken = self._woken
        with self._lock:
            batch = [woken.popleft() for _ in range(min(CHUNK, len(woken)))]
            more = self._scheduled = bool(woken)
        if more:
            self.loop.call_soon(self._drain)
        self._resolve(batch)

    def _resolve_all(self, parked: list[Parked], start: int = 0) -> None:
        end = start + CHUNK
        if end < len(parked):
            self.loop.call_soon(self._resolve_all, parked, end)
        self._resolve(parked[start:end])

    def _resolve(self, parked: list[Parked]) -> None:
        done = beats = 0
        for one in parked:
            waiter = one._waiter
            if waiter is not None and not waiter.done():
                direct = getattr(one, "_direct", None)
                if direct is not None and direct():
                    self.direct_writes += 1  # written on the loop; its task waits on
                    beats += 1
                    continue
                waiter.set_result(None)
                done += 1
            elif isinstance(one, Beat):
                one.fire()
                beats += 1
        if done or beats:
            self.resolved += done
            self.callbacks += 1
            self.most_per_callback = max(self.most_per_callback, done + beats)

    # -- the loop's thread ----------------------------------------------------------------------

    def arm(self, parked: Parked, timeout: float) -> None:
        """Resolve ``parked``'s future ``timeout`` seconds from now (at most :data:`SLOT`
        late)."""
        self.arm_at(parked, self.loop.time() + timeout)

    def arm_at(self, parked: Parked, due: float) -> None:
        """Resolve ``parked``'s future at ``due`` (the loop's time; at most :data:`SLOT`
        late)."""
        slot = math.ceil(due / SLOT)
        parked._deadline = due
        live = parked._slot
        if live is not None and live <= slot:
            return  # its entry comes up first and is moved on then
        # No entry, or a later one, which becomes stale (its slot number no longer matches).
        parked._slot = slot
        self._enter(slot, parked)

    def _enter(self, slot: int, parked: Parked) -> None:
        entries = self._slots.get(slot)
        if entries is None:
            entries = self._slots[slot] = []
            heapq.heappush(self._order, slot)
            if slot < self._timer_slot:
                self._schedule(slot)
        entries.append(parked)

    def _schedule(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = self.loop.call_at(slot * SLOT, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        _LAG.add(max(0.0, now - self._timer_slot * SLOT))
        self.ticks += 1
        # -1: no timer is made while entries move to later slots; one is made after.
        self._timer, self._timer_slot = None, -1
        due_now: list[Parked] = []
        order = self._order
        # The slots whose end has come (the loop may run a timer a clock tick early).
        limit = math.floor((now + _EARLY) / SLOT)
        while order and order[0] <= limit:
            slot = heapq.heappop(order)
            for parked in self._slots.pop(slot):
                if parked._slot != slot:
                    continue  # stale: it moved to an earlier slot
                parked._slot = None
                due = parked._deadline
                if due is None:
                    continue  # its wait ended before the deadline
                later = math.ceil(due / SLOT)
                if later > limit:  # waiting again, with a later deadline
                    parked._slot = later
                    self._enter(later, parked)
                else:
                    due_now.append(parked)
        self.most_per_tick = max(self.most_per_tick, len(due_now))
        self._timer_slot = math.inf
        if order:
            self._schedule(order[0])
        self._resolve_all(due_now)

    def slot_sizes(self) -> list[int]:
        """The subscriptions waiting in each slot of the wheel, earliest slot first (what
        each tick will find due, stale entries included)."""
        return [len(self._slots[slot]) for slot in sorted(self._slots)]

    @property
    def timers(self) -> int:
        """Timer handles this loop holds for its subscribers: 0 or 1."""
        return 0 if self._timer is None else 1


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaiters] = (
    weakref.WeakKeyDictionary()
)
_BY_LOOP_LOCK = threading.Lock()


def waiters_of(loop: asyncio.AbstractEventLoop) -> LoopWaiters:
    """The one :class:`LoopWaiters` of ``loop``."""
    found = _BY_LOOP.get(loop)
    if found is None:
        with _BY_LOOP_LOCK:
            found = _BY_LOOP.get(loop)
            if found is None:
                found = _BY_LOOP[loop] = LoopWaiters(loop)
    return found
