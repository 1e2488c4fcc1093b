"""What an event loop holds for the subscriptions waiting on it: one wake-up per dispatch, one
timer, whatever the number of subscribers.

A :class:`~transflow.streaming.fanout.Subscription` waiting in ``aget`` parks a future here.
A dispatch (on the hub's thread) that gives events to many waiting subscribers of one loop
crosses into that loop once (one ``call_soon_threadsafe``), and dispatches that come before
the loop ran it share it; the loop then resolves every future that was woken. Timeouts (the
streams' heartbeats) are kept in one heap per loop behind one timer handle, rounded up so
that subscribers due within the same fraction of their timeout fire in one tick; each
subscriber has at most one entry in the heap. The lateness of those ticks is the loop's
lag (:func:`loop_lag`). Nothing here starts a task or a thread.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import weakref
from typing import TYPE_CHECKING, Protocol

import attrs

from transflow.streaming.latency import Window

if TYPE_CHECKING:
    # Types only: a WSGI host that imports the fan-out never loads asyncio.
    import asyncio
    from collections.abc import Iterator

__all__ = ["LoopWaiters", "Parked", "loop_lag", "waiters_of"]

# Deadlines are rounded up to a multiple of timeout / _ROUNDING (at most _MAX_GRAIN s): a
# 15 s heartbeat fires within 1 s late at most, and 10,000 streams share 15 ticks.
_ROUNDING = 16
_MAX_GRAIN = 1.0

# Futures resolved per loop callback: each wakes a stream that then writes (~50-100 us), so
# a tick or a dispatch that wakes thousands lets the loop's I/O in between every chunk
# instead of holding it for the whole burst (the loop lag an idle 10,000 would show).
CHUNK = 128

_LAG = Window()


def loop_lag() -> Window:
    """How late the ticks of this process's event loops ran (seconds), the recent ones."""
    return _LAG


class Parked(Protocol):
    """What parks here: the subscription side of a wait."""

    _waiter: asyncio.Future[None] | None
    _deadline: float | None
    _in_heap: bool


@attrs.define(eq=False)
class LoopWaiters:
    """The waiting subscriptions of one event loop."""

    loop: asyncio.AbstractEventLoop
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _woken: list[Parked] = attrs.field(init=False, factory=list)
    _scheduled: bool = attrs.field(init=False, default=False)
    _heap: list[tuple[float, int, Parked]] = attrs.field(init=False, factory=list)
    _order: Iterator[int] = attrs.field(init=False, factory=itertools.count)
    _timer: asyncio.TimerHandle | None = attrs.field(init=False, default=None)
    _timer_at: float = attrs.field(init=False, default=math.inf)
    wakeups: int = attrs.field(init=False, default=0)
    """Times another thread crossed into the loop to wake subscribers."""
    ticks: int = attrs.field(init=False, default=0)
    """Times the one timer fired."""

    # -- any thread ---------------------------------------------------------------------------

    def wake(self, parked: Parked) -> None:
        """Resolve ``parked``'s future on the loop, soon; one crossing for all woken before."""
        with self._lock:
            self._woken.append(parked)
            if self._scheduled:
                return
            self._scheduled = True
            self.wakeups += 1
        try:
            self.loop.call_soon_threadsafe(self._resolve_woken)
        except RuntimeError:  # the loop closed under us: nobody is waiting any more
            with self._lock:
                self._woken.clear()
                self._scheduled = False

    def _resolve_woken(self) -> None:
        with self._lock:
            woken, self._woken = self._woken, []
            self._scheduled = False
        self._resolve_all(woken)

    def _resolve_all(self, parked: list[Parked], start: int = 0) -> None:
        end = start + CHUNK
        for one in parked[start:end]:
            _resolve(one)
        if end < len(parked):
            self.loop.call_soon(self._resolve_all, parked, end)

    # -- the loop's thread ----------------------------------------------------------------------

    def arm(self, parked: Parked, timeout: float) -> None:
        """Resolve ``parked``'s future ``timeout`` seconds from now (rounded up a little)."""
        now = self.loop.time()
        grain = min(_MAX_GRAIN, timeout / _ROUNDING)
        due = now + timeout
        if grain > 0:
            due = math.ceil(due / grain) * grain
        parked._deadline = due
        if not parked._in_heap:
            # An older, earlier entry stays and is pushed back when it comes up.
            parked._in_heap = True
            heapq.heappush(self._heap, (due, next(self._order), parked))
        self._schedule()

    def _schedule(self) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if first >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = first
        self._timer = self.loop.call_at(first, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        _LAG.add(max(0.0, now - self._timer_at))
        self.ticks += 1
        self._timer, self._timer_at = None, math.inf
        heap = self._heap
        due_now: list[Parked] = []
        while heap and heap[0][0] <= now:
            _, _, parked = heapq.heappop(heap)
            due = parked._deadline
            if due is None:  # its wait ended before the deadline
                parked._in_heap = False
            elif due > now:  # waiting again, with a later deadline
                heapq.heappush(heap, (due, next(self._order), parked))
            else:
                parked._in_heap = False
                due_now.append(parked)
        self._resolve_all(due_now)
        self._schedule()

    @property
    def timers(self) -> int:
        """Timer handles this loop holds for its subscribers: 0 or 1."""
        return 0 if self._timer is None else 1


def _resolve(parked: Parked) -> None:
    waiter = parked._waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


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
