"""The fan-out core of the progress hub: subscriptions, replay, dedup and dispatch, no I/O.

:class:`FanOut` keeps, per channel (``upload:{branch}:{uploadId}``), the upload's folded status
and a bounded replay buffer; it hands each new event to every subscriber of the channel and of
its branch pattern (``upload:{branch}:*``), drops redeliveries by identity (the upload's
channel and the event's ``seq``, remembered in a bounded window), cuts off a subscriber that
fell ``buffer_size`` events or ``buffer_bytes`` bytes behind
(:class:`~transflow.errors.SubscriberLaggedError`), and on subscribe replays what came after a
``Last-Event-ID`` (for a branch pattern, a :mod:`~transflow.streaming.cursor`). It starts
no thread: whoever receives events (the :class:`~transflow.streaming.hub.ProgressHub`, a
test, a host) calls :meth:`FanOut.dispatch`; a lock makes that safe from several threads.

Memory is bounded everywhere: each subscriber's buffer (in events and bytes), each channel's
replay buffer (in events and in bytes), all replay buffers together (in bytes: the least
recently active uploads lose their oldest events first), the identities remembered for
dedup (per channel and in all), and the number of channels remembered (least recently used
are forgotten).

Fairness: the lock is held for O(1) per dispatch and per subscriber delivered to; a resume
(``Last-Event-ID``) holds it for O(channels of the branch + events replayed) (an id a
channel no longer remembers costs a scan of that channel's replay), never for a scan or sort
of every buffered event; merging a branch's replay happens outside it.

Longer than 500 lines on purpose: one lock guards the subscriptions, the replay buffers, the
dedup window and the channel LRU, and the bounds reach across them (the total replay bytes
evict from other channels); split over modules, that lock's invariants would be too.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs

from transflow._wire.channels import branch_channel, parse_channel, upload_channel
from transflow._wire.model import MAX_SEQ, ProgressEvent
from transflow._wire.validators import at_least, bounded_int, positive
from transflow.errors import (
    ChannelError,
    EventFormatError,
    SubscriberLaggedError,
    SubscriptionClosedError,
    TransflowError,
)
from transflow.processing.progress import SEQS_PER_MS
from transflow.streaming.cursor import MAX_CURSOR_UPLOADS, Cursor, upload_key
from transflow.streaming.latency import Quantiles, Window
from transflow.streaming.snapshot import UploadStatus, fold_event

if TYPE_CHECKING:
    import asyncio

    from transflow.streaming.waiters import LoopWaiters

__all__ = ["FanOut", "FanOutStats", "Subscription", "event_size", "split_event_id"]

_SEQ = re.compile(r"[0-9]{1,16}", re.ASCII)  # 2**53 has 16 digits
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def split_event_id(event_id: object) -> tuple[str, int] | None:
    """``"{uploadId}:{seq}"`` (an SSE ``Last-Event-ID``) as (upload id, seq); None when it
    is not one (including a seq past :data:`~transflow._wire.model.MAX_SEQ`, non-ASCII
    digits, or anything that is not a string)."""
    if not isinstance(event_id, str) or ":" not in event_id:
        return None
    upload_id, _, seq = event_id.rpartition(":")
    if not upload_id or _SEQ.fullmatch(seq) is None or int(seq) > MAX_SEQ:
        return None
    return upload_id, int(seq)


def event_size(event: ProgressEvent) -> int:
    """The bytes of ``event``'s wire JSON, once it is known to be deliverable: its channel
    is the one of its branch and upload id, neither holds a control character (its SSE id
    could not be written), and its JSON can be written. Raises :class:`EventFormatError`
    for an event no stream could ever carry: the caller drops it rather than retry it."""
    problems = []
    if event.channel != upload_channel(event.branch, event.upload_id):
        problems.append(
            f"channel: {event.channel[:80]!r} is not upload:{{branch}}:{{uploadId}} of the "
            "event's own branch and uploadId"
        )
    else:
        try:
            parse_channel(event.channel)
        except ChannelError as exc:
            problems.append(f"channel: {exc}")
    if _CONTROL.search(event.channel):
        problems.append("channel: holds a control character (CR, LF, NUL, ...)")
    if problems:
        raise EventFormatError("progress event", problems)
    try:
        return len(event.to_json().encode("utf-8", "surrogatepass"))
    except TransflowError as exc:  # a number JSON cannot write (1e400 read as infinity)
        raise EventFormatError("progress event", [f"cannot be written as JSON: {exc}"]) from exc


# asyncio.get_running_loop and waiters_of, imported at the first aget: a WSGI host that
# imports the fan-out never loads asyncio.
_LOOP_TOOLS: tuple[Callable[[], asyncio.AbstractEventLoop], Callable[..., LoopWaiters]] | None = (
    None
)


def _loop_tools() -> tuple[Callable[[], asyncio.AbstractEventLoop], Callable[..., LoopWaiters]]:
    global _LOOP_TOOLS  # noqa: PLW0603 - set once, the same value from any thread
    import asyncio  # noqa: PLC0415

    from transflow.streaming.waiters import waiters_of  # noqa: PLC0415

    _LOOP_TOOLS = (asyncio.get_running_loop, waiters_of)
    return _LOOP_TOOLS


@attrs.define(eq=False)
class Subscription:
    """A subscriber's view of one channel or branch pattern.

    Iterate it for the events, in order (the iteration ends when it is closed, and raises
    :class:`SubscriberLaggedError` if it fell too far behind), or call :meth:`get` / :meth:`aget`
    with a timeout. ``snapshot`` is the folded status of the upload at the moment of
    subscribing (for a branch pattern, ``snapshots`` holds one per known upload).
    """

    channel: str
    snapshots: tuple[UploadStatus, ...]
    buffer_size: int
    _fanout: FanOut | None = attrs.field(repr=False)
    # (event, bytes of its wire JSON, time.monotonic() it was dispatched, 0.0 if replayed),
    # so the byte budget is given back as events are taken and the writer can time them.
    _items: deque[tuple[ProgressEvent, int, float]] = attrs.field(factory=deque, repr=False)
    # _cond waits on _lock; the paths that only need the lock take it directly (a C call,
    # not Condition's Python __enter__), and notify only when a thread waits in get().
    _lock: threading.RLock = attrs.field(init=False, factory=threading.RLock, repr=False)
    _cond: threading.Condition = attrs.field(
        default=attrs.Factory(lambda self: threading.Condition(self._lock), takes_self=True),
        repr=False,
    )
    _sync_waiting: int = attrs.field(init=False, default=0, repr=False)
    _closed: SubscriptionClosedError | None = attrs.field(default=None, repr=False)
    # One wait on an event loop at a time (see transflow.streaming.waiters): its future,
    # kept for the next wait until something resolves it, its deadline, and the loop's
    # waiters. No Event, closure, task or timer of its own.
    _waiter: asyncio.Future[None] | None = attrs.field(init=False, default=None, repr=False)
    _deadline: float | None = attrs.field(init=False, default=None, repr=False)
    _slot: int | None = attrs.field(init=False, default=None, repr=False)
    _parked: LoopWaiters | None = attrs.field(init=False, default=None, repr=False)
    _home: LoopWaiters | None = attrs.field(init=False, default=None, repr=False)
    # Set by a stream whose server's send the loop may run itself (apps._serve on uvicorn):
    # writes what a dispatch woke this subscription for, on the loop, with the stream's
    # task left waiting; True when it did and the subscription waits again.
    _direct: Callable[[], bool] | None = attrs.field(init=False, default=None, repr=False)
    # The fan-out's dispatch->written window (kept after the subscription is unhooked), and
    # the dispatch time of the event taken last, until it is written.
    _written: Window | None = attrs.field(kw_only=True, default=None, repr=False)
    _taken_at: float = attrs.field(init=False, default=0.0, repr=False)
    _taken_more: tuple[float, ...] = attrs.field(init=False, default=(), repr=False)
    # Decided once, by the fan-out that registered it: unsubscribing must look in the same
    # registry (upload:main:x:* is an upload id "x:*", not a branch pattern).
    _pattern: bool = attrs.field(
        kw_only=True,
        repr=False,
        default=attrs.Factory(lambda self: self.channel.endswith(":*"), takes_self=True),
    )
    buffer_bytes: int = attrs.field(kw_only=True, default=8 << 20)
    _held: int = attrs.field(init=False, default=0, repr=False)
    # A branch pattern's position: what its event ids say (see transflow.streaming.cursor).
    _cursor: Cursor | None = attrs.field(kw_only=True, default=None, repr=False)
    _last_id: str | None = attrs.field(init=False, default=None, repr=False)

    @property
    def is_pattern(self) -> bool:
        """Whether this subscription is for a whole branch (``upload:{branch}:*``)."""
        return self._pattern

    @property
    def snapshot(self) -> UploadStatus:
        """The folded status of the upload when the subscription began. For a branch
        pattern: its most recently updated upload (see ``snapshots`` for all)."""
        if self.snapshots:
            return self.snapshots[-1]
        return UploadStatus(self.channel)

    def snapshot_json(self) -> str:
        """The data of the SSE ``snapshot`` event: the upload's status, or for a branch
        ``{"channel": …, "uploads": [status, …]}``."""
        if not self.is_pattern:
            return self.snapshot.to_json()
        import json  # noqa: PLC0415 - only branch snapshots need it

        data = {"channel": self.channel, "uploads": [s.to_dict() for s in self.snapshots]}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @property
    def closed(self) -> bool:
        """Whether the subscription has ended."""
        return self._closed is not None

    @property
    def pending(self) -> int:
        """Events buffered, not yet taken."""
        with self._lock:
            return len(self._items)

    @property
    def pending_bytes(self) -> int:
        """Bytes (of wire JSON) of the events buffered, not yet taken."""
        with self._lock:
            return self._held

    @property
    def last_event_id(self) -> str | None:
        """The SSE id to send with the event last taken: the event's own
        ``{uploadId}:{seq}`` for one upload; for a branch pattern a cursor
        (:mod:`transflow.streaming.cursor`) that any hub instance resumes from exactly."""
        with self._lock:
            if self._cursor is not None and self._last_id is None:
                self._last_id = self._cursor.encode()
            return self._last_id

    # -- the fan-out's side (called with its lock held) -------------------------------------

    def _push(self, event: ProgressEvent, size: int, at: float = 0.0) -> str | None:
        """Buffer an event of ``size`` bytes; when the subscriber lagged and was cut off
        (or had been), what it ran out of: ``"events"`` or ``"bytes"``."""
        with self._lock:
            if self._closed is not None:
                return "events"
            # A reader that is caught up takes any one event, however large.
            over = "events" if len(self._items) >= self.buffer_size else None
            if over is None and self._items and self._held + size > self.buffer_bytes:
                over = "bytes"
            if over is not None:
                behind = (
                    f"{self.buffer_size} events"
                    if over == "events"
                    else f"more than {self.buffer_bytes} bytes of events"
                )
                self._items.clear()  # free the memory now; the client resumes by Last-Event-ID
                self._held = 0
                self._end(
                    SubscriberLaggedError(
                        f"subscriber of {self.channel} fell {behind} behind and was "
                        "disconnected; reconnect with the last event id you saw"
                    )
                )
                return over
            self._items.append((event, size, at))
            self._held += size
            if self._sync_waiting:
                self._cond.notify_all()
            self._wake()
            return None

    def _end(self, reason: SubscriptionClosedError) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = reason
            self._cond.notify_all()
            self._wake()

    def _wake(self) -> None:
        # With self._lock held. Only a subscriber parked on a loop needs the crossing; the
        # loop's waiters make it one per dispatch for all of that loop's subscribers. Once
        # woken it is unparked: the next events of the same dispatch add no second wake.
        parked = self._parked
        if parked is not None:
            self._parked = None
            parked.wake(self)

    # -- the subscriber's side ------------------------------------------------------------

    def _take(self) -> ProgressEvent | None:
        if self._items:
            event, size, at = self._items.popleft()
            self._held -= size
            self._taken_at = at
            if self._cursor is None:
                self._last_id = event.event_id
            elif event.seq is not None:
                self._cursor.advance(upload_key(event.upload_id), event.seq)
                self._last_id = None  # encoded when asked for
            return event
        if self._closed is not None:
            raise self._closed
        return None

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None when the
        time ran out. Raises :class:`SubscriptionClosedError` once closed and drained, and
        :class:`SubscriberLaggedError` if the subscriber was cut off."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                event = self._take()
                if event is not None:
                    return event
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._sync_waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._sync_waiting -= 1

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None:
        """:meth:`get` for asyncio: waits on the event loop, not in a thread. The wait costs
        no task, timer or event of its own (see :mod:`transflow.streaming.waiters`)."""
        get_running_loop, waiters_of = _LOOP_TOOLS or _loop_tools()
        loop = get_running_loop()
        waiters = self._home
        if waiters is None or waiters.loop is not loop:
            waiters = self._home = waiters_of(loop)
            self._waiter = None  # a future of another loop
        now = loop.time()
        # An infinite timeout is none (a stream whose heartbeats the loop writes itself).
        deadline = None if timeout is None or timeout == math.inf else now + timeout
        lock = self._lock
        try:
            while True:
                with lock:
                    event = self._take()
                    if event is not None:
                        return event
                    if deadline is not None and deadline <= now:
                        return None
                    waiter = self._waiter
                    if waiter is None or waiter.done():
                        waiter = self._waiter = loop.create_future()
                    self._parked = waiters
                if deadline is not None:
                    waiters.arm_at(self, deadline)
                await waiter
                now = loop.time()
        finally:
            self._parked = None  # a wake racing this only resolves a future nobody awaits
            self._deadline = None

    def _repark(self) -> bool:
        """After a direct write (see ``_direct``): wait again on the same future, unless
        events came or the subscription ended meanwhile (False: its task takes over)."""
        with self._lock:
            if self._items or self._closed is not None or self._home is None:
                return False
            self._parked = self._home
            return True

    def mark_written(self) -> None:
        """Say the event taken last was written to the client: its dispatch->written time
        goes into the hub's stats (``HubStats.written``). The streams of
        :mod:`transflow.streaming.sse` call it; a replayed event is not timed."""
        at, self._taken_at = self._taken_at, 0.0
        more, self._taken_more = self._taken_more, ()
        if self._written is not None and (at or more):
            self._written.add_since(time.monotonic(), (at, *more))

    def take_ready(self, limit: int) -> list[tuple[ProgressEvent, str]]:
        """Up to ``limit`` more events already buffered, each with the SSE id to send with
        it, without waiting (after :meth:`aget` or :meth:`get` returned one): a stream
        writes them together. :meth:`mark_written` then times them all."""
        # _take's work inline: this runs once per stream per dispatch on the loop's thread.
        taken: list[tuple[ProgressEvent, str]] = []
        ats: list[float] = []
        with self._lock:
            items, cursor = self._items, self._cursor
            while items and len(taken) < limit:
                event, size, at = items.popleft()
                self._held -= size
                if at:
                    ats.append(at)
                if cursor is None:
                    last_id = event.event_id or ""
                else:  # a branch's cursor after this event
                    if event.seq is not None:
                        cursor.advance(upload_key(event.upload_id), event.seq)
                    last_id = cursor.encode()
                self._last_id = last_id
                taken.append((event, last_id))
        self._taken_more = tuple(ats)
        return taken

    def close(self) -> None:
        """End the subscription: the hub stops delivering to it and iteration ends."""
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            fanout._unsubscribe(self)
        self._end(SubscriptionClosedError(f"subscription to {self.channel} closed"))

    def __iter__(self) -> Iterator[ProgressEvent]:
        while True:
            try:
                event = self.get()
            except SubscriberLaggedError:
                raise
            except SubscriptionClosedError:
                return
            if event is not None:
                yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# (arrival number, event, bytes of its wire JSON)
_Replayed = tuple[int, ProgressEvent, int]


@attrs.define(eq=False)
class _Channel:
    status: UploadStatus
    pattern: str  # its branch pattern, upload:{branch}:*
    key: str  # its upload's key in a branch cursor
    replay: deque[_Replayed] = attrs.field(factory=deque)
    replay_bytes: int = 0
    # The identities (seqs) dispatched most recently, oldest first, with their arrival
    # numbers: the dedup window, and where a resume finds its place in the replay.
    seen: OrderedDict[int, int] = attrs.field(factory=OrderedDict)
    # The highest seq dispatched: an event above top + 1 leaves holes (see FanOut.gap_wait).
    top: int | None = None


@attrs.frozen
class FanOutStats:
    """Counters of a :class:`FanOut` since it was made.

    ``duplicates``: events dropped because the same identity (channel and ``seq``) was
    dispatched before. ``malformed``: messages dropped because no stream could ever carry
    them (they do not parse, or parse into an event that cannot be delivered). ``lagged``:
    subscribers cut off for falling behind, ``lagged_bytes`` of them for holding more than
    their byte budget. ``replay_bytes``: the bytes the replay buffers hold now;
    ``replay_evicted``: events dropped from them (or never kept) to stay within the byte
    budgets. ``identities``: the identities remembered for dedup now. ``gaps``: events
    missing for good, a seq of an attempt that never arrived within ``gap_wait`` while its
    successors did (another reader on the queue, or a publish that failed).
    ``terminals_held``: ``done``, ``error`` or ``cancelled`` events held back because an
    earlier event of their attempt had not arrived yet (see ``FanOut.terminal_hold``)."""

    subscribers: int
    channels: int
    dispatched: int
    delivered: int
    duplicates: int
    malformed: int
    lagged: int
    replay_bytes: int
    replay_evicted: int
    lagged_bytes: int
    identities: int
    gaps: int
    terminals_held: int


@attrs.define(eq=False)
class FanOut:
    """Subscribers by channel and branch pattern, and each channel's status and replay.

    ``buffer_size`` events and ``buffer_bytes`` bytes (of wire JSON) at most wait for a
    subscriber before it is cut off; ``replay_size`` events and ``replay_bytes`` bytes per
    channel are kept for resuming, ``replay_total_bytes`` in all channels together;
    ``max_channels`` channels are remembered. An event larger than a byte budget is
    delivered live but not kept. The last ``dedup_size`` identities of each channel, and
    ``dedup_total`` in all (the least recently active channels forget first), are
    remembered to drop redeliveries. A branch pattern's event ids list at most
    ``cursor_uploads`` uploads (see :mod:`transflow.streaming.cursor`).

    Gaps. Within one attempt at a job, ``seq`` rises by exactly 1
    (:class:`~transflow.processing.progress.ProgressStream`), and a new attempt starts at a
    multiple of :data:`~transflow.processing.progress.SEQS_PER_MS`. So an event above its
    channel's highest seq + 1 leaves holes: the seqs in between (or, for a jump of more than
    ``SEQS_PER_MS``, a new attempt's seqs from its start). A hole filled within
    ``gap_wait`` seconds was a late event; one still open then is a gap, counted in
    ``gaps`` and handed once to :meth:`take_gaps`. At most ``max_holes`` holes are watched
    (the oldest count as gaps early).

    Terminal events last. A ``done``, ``error`` or ``cancelled`` event that arrives while an
    earlier seq of its attempt is missing (a batch entry that failed and is being sent again
    after its successors were accepted) is held until the missing events arrive, at most
    ``terminal_hold`` seconds; then it is delivered, after them. A browser stops reading at
    the terminal event, so one delivered first would lose what came late; one held past
    ``terminal_hold`` is delivered anyway (the missing events then count as gaps once
    ``gap_wait`` passes). Counted in ``terminals_held``."""

    buffer_size: int = attrs.field(default=1000, validator=at_least(1))
    replay_size: int = attrs.field(default=1000, validator=at_least(0))
    max_channels: int = attrs.field(default=10_000, validator=at_least(1))
    replay_bytes: int = attrs.field(default=1 << 20, validator=at_least(0), kw_only=True)
    replay_total_bytes: int = attrs.field(default=256 << 20, validator=at_least(0), kw_only=True)
    buffer_bytes: int = attrs.field(default=8 << 20, validator=at_least(1), kw_only=True)
    dedup_size: int = attrs.field(default=1024, validator=at_least(1), kw_only=True)
    dedup_total: int = attrs.field(default=1 << 18, validator=at_least(1), kw_only=True)
    cursor_uploads: int = attrs.field(
        default=16, validator=bounded_int(1, MAX_CURSOR_UPLOADS), kw_only=True
    )

    gap_wait: float = attrs.field(default=30.0, validator=positive, kw_only=True)
    terminal_hold: float = attrs.field(default=5.0, validator=positive, kw_only=True)
    max_holes: int = attrs.field(default=1 << 14, validator=at_least(1), kw_only=True)

    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    # (channel, seq) of each missing event, with when it went missing, oldest first.
    _holes: OrderedDict[tuple[str, int], float] = attrs.field(init=False, factory=OrderedDict)
    _gap_news: int = attrs.field(init=False, default=0)
    _gap_channel: str | None = attrs.field(init=False, default=None)
    _channels: OrderedDict[str, _Channel] = attrs.field(init=False, factory=OrderedDict)
    # Each branch pattern's channels, so a branch subscribe never scans other branches'.
    _branches: dict[str, dict[str, None]] = attrs.field(init=False, factory=dict)
    # Channels whose replay holds events, least recently dispatched to first: the total
    # byte budget evicts from the front.
    _replaying: OrderedDict[str, None] = attrs.field(init=False, factory=OrderedDict)
    _replay_total: int = attrs.field(init=False, default=0)
    # Channels whose dedup window holds identities, least recently dispatched to first.
    _remembering: OrderedDict[str, None] = attrs.field(init=False, factory=OrderedDict)
    _identities: int = attrs.field(init=False, default=0)
    _exact: dict[str, set[Subscription]] = attrs.field(init=False, factory=dict)
    _patterns: dict[str, set[Subscription]] = attrs.field(init=False, factory=dict)
    _arrivals: Iterator[int] = attrs.field(init=False, factory=itertools.count)
    _counts: dict[str, int] = attrs.field(
        init=False,
        factory=lambda: dict.fromkeys(
            (
                "dispatched",
                "delivered",
                "duplicates",
                "malformed",
                "lagged",
                "lagged_bytes",
                "replay_evicted",
                "gaps",
                "terminals_held",
            ),
            0,
        ),
    )
    _closed: bool = attrs.field(init=False, default=False)
    _written: Window = attrs.field(init=False, factory=Window)
    # Terminal events waiting for an earlier seq of their attempt, by (channel, seq), with
    # what delivering them needs and the timer that delivers them anyway.
    _held: dict[tuple[str, int], tuple[ProgressEvent, str, int, threading.Timer]] = attrs.field(
        init=False, factory=dict
    )

    def written(self) -> Quantiles:
        """How long recent events took from :meth:`dispatch` to being written to a client
        (the streams report it with :meth:`Subscription.mark_written`)."""
        return self._written.quantiles()

    def stats(self) -> FanOutStats:
        """The counters now."""
        with self._lock:
            self._expire_holes()
            return FanOutStats(
                subscribers=sum(len(s) for s in (*self._exact.values(), *self._patterns.values())),
                channels=len(self._channels),
                replay_bytes=self._replay_total,
                identities=self._identities,
                **self._counts,
            )

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        last_event_id: str | None = None,
        *,
        buffer_size: int | None = None,
        buffer_bytes: int | None = None,
    ) -> Subscription:
        """Subscribe to ``upload:{branch}:{uploadId}`` or ``upload:{branch}:*``; with
        ``last_event_id``, the events after it still in the replay buffers come first (for
        a branch pattern, after the cursor its event ids carry; a plain ``{uploadId}:{seq}``
        resumes after that event in this fan-out's arrival order). Raises
        :class:`~transflow.errors.ChannelError` for a malformed channel and
        :class:`SubscriptionClosedError` once :meth:`close` was called."""
        _branch, upload_id = parse_channel(channel)
        pattern = upload_id is None
        cursor = Cursor.parse(last_event_id, self.cursor_uploads) if pattern else None
        resume = None if cursor is not None else split_event_id(last_event_id)
        size = buffer_size or self.buffer_size
        budget = buffer_bytes or self.buffer_bytes
        with self._lock:
            if self._closed:
                raise SubscriptionClosedError(
                    "the progress hub has stopped; subscribe to a running hub"
                )
            if pattern:
                names = list(self._branches.get(channel, ()))
                known = [self._channels[name] for name in names]
                snapshots = tuple(k.status for k in known)
                if cursor is not None:
                    tails = self._cursor_tails(known, cursor)
                else:
                    tails = self._pattern_tails(channel, names, resume)
                    cursor = self._seed_cursor(snapshots)
            else:
                found = self._channels.get(channel)
                snapshots = (found.status if found else UploadStatus(channel),)
                tails = [self._exact_tail(found, upload_id, resume)]
            sub = Subscription(
                channel,
                snapshots,
                size,
                self,
                pattern=pattern,
                buffer_bytes=budget,
                cursor=cursor,
                written=self._written,
            )
            registry = self._patterns if pattern else self._exact
            registry.setdefault(channel, set()).add(sub)
        if tails:
            # Merged by arrival outside the lock. Events dispatched since registering are
            # newer than every replayed one, so the replay goes in front of them. Only the
            # newest that fit the subscriber's budgets: the rest is in the snapshot.
            merged = list(heapq.merge(*tails, key=lambda entry: entry[0]))
            kept: list[tuple[ProgressEvent, int, float]] = []
            held = 0
            for _, event, nbytes in reversed(merged):
                if len(kept) >= size or (kept and held + nbytes > budget):
                    break
                kept.append((event, nbytes, 0.0))
                held += nbytes
            with sub._cond:
                sub._items.extendleft(kept)
                sub._held += held
        return sub

    def _seed_cursor(self, snapshots: tuple[UploadStatus, ...]) -> Cursor:
        """A new branch stream's position: the last event of every upload in its snapshot
        (the most recent ``cursor_uploads``; the others below the cursor's horizon)."""
        cursor = Cursor(self.cursor_uploads)
        # O(uploads of the branch), not a sort of them: only the newest few are listed.
        ranked = heapq.nlargest(
            self.cursor_uploads + 1,
            (
                (s.last_seq, s.upload_id)
                for s in snapshots
                if s.last_seq is not None and s.upload_id is not None
            ),
        )
        if len(ranked) > self.cursor_uploads:
            cursor.horizon = ranked.pop()[0]
        for seq, upload in reversed(ranked):
            cursor.advance(upload_key(upload), seq)
        return cursor

    @staticmethod
    def _after(known: _Channel, seq: int) -> list[_Replayed]:
        """The replayed events of a channel that came after its event ``seq``: after its
        place in arrival order when remembered (a late event, with a lower seq, included),
        else those with a higher seq."""
        arrived = known.seen.get(seq)
        if arrived is None:
            return FanOut._newer(known, seq)
        # From the newest back: O(events replayed).
        tail = list(itertools.takewhile(lambda entry: entry[0] > arrived, reversed(known.replay)))
        tail.reverse()
        return [entry for entry in tail if entry[1].seq is not None]

    @staticmethod
    def _newer(known: _Channel, seq: int) -> list[_Replayed]:
        return [entry for entry in known.replay if entry[1].seq is not None and entry[1].seq > seq]

    def _exact_tail(
        self, known: _Channel | None, upload_id: str | None, resume: tuple[str, int] | None
    ) -> list[_Replayed]:
        if known is None or resume is None or resume[0] != upload_id:
            return []
        return self._after(known, resume[1])

    def _cursor_tails(self, known: list[_Channel], cursor: Cursor) -> list[list[_Replayed]]:
        # Per upload, its own order is the same on every instance: resume each after the
        # last event the cursor says was given. O(channels of the branch + events replayed).
        tails = []
        for channel in known:
            seq = cursor.seqs.get(channel.key)
            if seq is not None:
                tail = self._after(channel, seq)
            elif cursor.horizon is not None:
                tail = self._newer(channel, cursor.horizon)
            else:  # nothing of it was given
                tail = [entry for entry in channel.replay if entry[1].seq is not None]
            if tail:
                tails.append(tail)
        return tails

    def _pattern_tails(
        self, pattern: str, names: list[str], resume: tuple[str, int] | None
    ) -> list[list[_Replayed]]:
        if resume is None:
            return []
        branch, _ = parse_channel(pattern)
        last = self._channels.get(upload_channel(branch, resume[0]))
        after: int | None = None
        if last is not None and last.pattern == pattern:
            after = last.seen.get(resume[1])
            if after is not None and (not last.replay or last.replay[0][0] > after):
                after = None  # evicted from the replay: the snapshots carry the state
        if after is None:
            return []  # too old for the buffers: the snapshots carry the state
        tails = []
        for name in names:
            # From the newest back: islice from the front would walk the whole buffer.
            tail = list(
                itertools.takewhile(
                    lambda entry: entry[0] > after, reversed(self._channels[name].replay)
                )
            )
            if tail:
                tail.reverse()
                tails.append(tail)
        return tails

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._forget(sub)

    def _forget(self, sub: Subscription) -> None:
        registry = self._patterns if sub.is_pattern else self._exact
        group = registry.get(sub.channel)
        if group is not None:
            group.discard(sub)
            if not group:
                del registry[sub.channel]

    def close(self, why: str = "the progress hub stopped") -> None:
        """End every subscription (``why`` is said to each) and refuse new ones."""
        with self._lock:
            self._closed = True
            for *_, timer in self._held.values():
                timer.cancel()
            self._held.clear()
            subs = [s for group in (*self._exact.values(), *self._patterns.values()) for s in group]
            self._exact.clear()
            self._patterns.clear()
        for sub in subs:
            sub._fanout = None
            sub._end(SubscriptionClosedError(f"{why}; {sub.channel} ended"))

    def end_subscribers(self, reason: Callable[[str], SubscriptionClosedError]) -> int:
        """End every subscription with ``reason(channel)`` (new ones are still accepted);
        returns how many were ended."""
        with self._lock:
            subs = [s for group in (*self._exact.values(), *self._patterns.values()) for s in group]
            self._exact.clear()
            self._patterns.clear()
        for sub in subs:
            sub._fanout = None
            sub._end(reason(sub.channel))
        return len(subs)

    # -- dispatching ----------------------------------------------------------------------

    def _channel(self, name: str, pattern: str) -> _Channel:
        known = self._channels.get(name)
        if known is None:
            _branch, upload_id = parse_channel(name)
            known = self._channels[name] = _Channel(
                UploadStatus(name), pattern, upload_key(upload_id or "")
            )
            self._branches.setdefault(pattern, {})[name] = None
            while len(self._channels) > self.max_channels:
                self._drop_channel(*self._channels.popitem(last=False))
        else:
            self._channels.move_to_end(name)
        return known

    def _drop_channel(self, name: str, known: _Channel) -> None:
        self._replay_total -= known.replay_bytes
        self._replaying.pop(name, None)
        self._identities -= len(known.seen)
        self._remembering.pop(name, None)
        names = self._branches.get(known.pattern)
        if names is not None:
            names.pop(name, None)
            if not names:
                del self._branches[known.pattern]

    def _keep(self, name: str, known: _Channel, entry: _Replayed) -> None:
        size = entry[2]
        if self.replay_size == 0 or size > min(self.replay_bytes, self.replay_total_bytes):
            if self.replay_size:
                self._counts["replay_evicted"] += 1
            return
        known.replay.append(entry)
        known.replay_bytes += size
        self._replay_total += size
        self._replaying[name] = None
        self._replaying.move_to_end(name)
        while len(known.replay) > self.replay_size:
            self._evict(name, known)
        while known.replay_bytes > self.replay_bytes:
            self._evict(name, known)
            self._counts["replay_evicted"] += 1
        while self._replay_total > self.replay_total_bytes:
            oldest = next(iter(self._replaying))
            self._evict(oldest, self._channels[oldest])
            self._counts["replay_evicted"] += 1

    def _evict(self, name: str, known: _Channel) -> None:
        size = known.replay.popleft()[2]
        known.replay_bytes -= size
        self._replay_total -= size
        if not known.replay:
            del self._replaying[name]

    def _remember(self, name: str, known: _Channel, seq: int, arrival: int) -> None:
        known.seen[seq] = arrival
        self._identities += 1
        self._remembering[name] = None
        self._remembering.move_to_end(name)
        if len(known.seen) > self.dedup_size:
            self._forget_identity(name, known)
        while self._identities > self.dedup_total:
            oldest = next(iter(self._remembering))
            self._forget_identity(oldest, self._channels[oldest])

    def _forget_identity(self, name: str, known: _Channel) -> None:
        known.seen.popitem(last=False)
        self._identities -= 1
        if not known.seen:
            del self._remembering[name]

    def _track(self, name: str, known: _Channel, seq: int) -> None:
        """Note the holes ``seq`` leaves, or the hole it fills (called with the lock)."""
        top = known.top
        if self._holes.pop((name, seq), None) is not None or (top is not None and seq <= top):
            return
        known.top = seq
        if top is None:
            return  # the first event heard of: what came before is not ours to know
        # The same attempt, or a new one from its first seq (SEQS_PER_MS apart at least).
        low = top + 1 if seq - top <= SEQS_PER_MS else seq - seq % SEQS_PER_MS
        now = time.monotonic()
        for missing in range(low, seq):
            self._holes[(name, missing)] = now
        while len(self._holes) > self.max_holes:
            self._gap(self._holes.popitem(last=False)[0][0])

    def _gap(self, channel: str) -> None:
        self._counts["gaps"] += 1
        self._gap_news += 1
        self._gap_channel = channel

    def _expire_holes(self, now: float | None = None) -> None:
        limit = (time.monotonic() if now is None else now) - self.gap_wait
        while self._holes:
            (channel, _seq), since = next(iter(self._holes.items()))
            if since > limit:
                return
            del self._holes[(channel, _seq)]
            self._gap(channel)

    def take_gaps(self, now: float | None = None) -> tuple[int, str | None]:
        """The gaps found since the last call (holes still open ``gap_wait`` seconds before
        ``now``, a :func:`time.monotonic` time, by default the present), and the channel of
        the latest; the caller logs them."""
        with self._lock:
            self._expire_holes(now)
            news, channel = self._gap_news, self._gap_channel
            self._gap_news, self._gap_channel = 0, None
        return news, channel

    def malformed(self) -> None:
        """Count a message that was not an event (the caller logs and drops it)."""
        with self._lock:
            self._counts["malformed"] += 1

    def dispatch(self, event: ProgressEvent, *, pattern: str | None = None) -> int:
        """Fold ``event`` into its channel and hand it to every matching subscriber; returns
        how many got it (0 for a redelivery: an event whose identity, its channel and
        ``seq``, is among the channel's last ``dedup_size`` dispatched). An event that
        arrives after events with a higher seq (a batch entry sent again after its
        successors) is no redelivery: it is delivered where it arrived. Events without a
        seq have no identity and are always delivered. ``pattern`` is the event's branch
        pattern, when the caller parsed it already. Raises :class:`EventFormatError` for an
        event no stream could carry (see :func:`event_size`); nothing is changed then."""
        size = event_size(event)
        pattern = pattern or branch_channel(event.branch)
        with self._lock:
            known = self._channel(event.channel, pattern)
            if event.seq is not None and event.seq in known.seen:
                self._counts["duplicates"] += 1  # a redelivery: subscribers already have it
                return 0
            arrival = next(self._arrivals)
            if event.seq is None:
                return self._deliver(event, known, pattern, size, arrival)
            self._remember(event.channel, known, event.seq, arrival)
            self._track(event.channel, known, event.seq)
            if event.type.terminal and not self._closed and self._missing_below(event):
                self._hold(event, pattern, size)
                return 0
            delivered = self._deliver(event, known, pattern, size, arrival)
            if self._held:
                delivered += self._release_ready(event.channel)
        return delivered

    def _missing_below(self, event: ProgressEvent) -> bool:
        # With the lock, after _track: a hole of the channel below the event's seq (one it
        # left, or one still open; an older attempt's only until it counts as a gap).
        seq = event.seq
        assert seq is not None
        return any(channel == event.channel and hole < seq for channel, hole in self._holes)

    def _hold(self, event: ProgressEvent, pattern: str, size: int) -> None:
        assert event.seq is not None
        key = (event.channel, event.seq)
        timer = threading.Timer(self.terminal_hold, self._release_held, (key,))
        timer.daemon = True
        self._held[key] = (event, pattern, size, timer)
        self._counts["terminals_held"] += 1
        timer.start()

    def _release_ready(self, name: str) -> int:
        # With the lock: deliver the held terminal events of ``name`` that nothing is
        # missing below any more.
        delivered = 0
        for key in [k for k in self._held if k[0] == name]:
            if not self._missing_below(self._held[key][0]):
                delivered += self._deliver_held(key)
        return delivered

    def _release_held(self, key: tuple[str, int]) -> None:
        # terminal_hold is over: deliver it, whatever is still missing.
        with self._lock:
            if key in self._held:
                self._deliver_held(key)

    def _deliver_held(self, key: tuple[str, int]) -> int:
        event, pattern, size, timer = self._held.pop(key)
        timer.cancel()
        known = self._channel(event.channel, pattern)
        arrival = next(self._arrivals)
        if event.seq is not None and event.seq in known.seen:
            known.seen[event.seq] = arrival  # a resume finds it where it was delivered
        return self._deliver(event, known, pattern, size, arrival)

    def _deliver(
        self, event: ProgressEvent, known: _Channel, pattern: str, size: int, arrival: int
    ) -> int:
        """Fold ``event`` into its channel, keep it for replay and hand it to every
        matching subscriber (with the lock); how many got it."""
        known.status = fold_event(known.status, event)
        self._keep(event.channel, known, (arrival, event, size))
        targets = [*self._exact.get(event.channel, ()), *self._patterns.get(pattern, ())]
        delivered = 0
        now = time.monotonic()
        for sub in targets:
            over = sub._push(event, size, now)
            if over is None:
                delivered += 1
            else:
                self._counts["lagged"] += 1
                if over == "bytes":
                    self._counts["lagged_bytes"] += 1
                self._forget(sub)
                sub._fanout = None
        self._counts["dispatched"] += 1
        self._counts["delivered"] += delivered
        return delivered
