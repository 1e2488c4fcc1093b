"""The fan-out core of the progress hub: subscriptions, replay, dedup and dispatch, no I/O.

:class:`FanOut` keeps, per channel (``upload:{branch}:{uploadId}``), the upload's folded status
and a bounded replay buffer; it hands each new event to every subscriber of the channel and of
its branch pattern (``upload:{branch}:*``), drops redeliveries by ``seq``, cuts off a subscriber
that fell ``buffer_size`` events behind (:class:`~transflow.errors.SubscriberLagged`), and on
subscribe replays what came after a ``Last-Event-ID``. It starts no thread: whoever receives
events (the :class:`~transflow.streaming.hub.ProgressHub`, a test, a host) calls
:meth:`FanOut.dispatch`; a lock makes that safe from several threads.

Memory is bounded everywhere: each subscriber's buffer, each channel's replay buffer, and the
number of channels remembered (least recently used are forgotten).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator

import attrs

from transflow._wire.channels import branch_channel, channel_matches, parse_channel
from transflow._wire.model import ProgressEvent
from transflow._wire.options import at_least
from transflow.errors import SubscriberLagged, SubscriptionClosed
from transflow.streaming.snapshot import UploadStatus, fold_event

__all__ = ["FanOut", "FanOutStats", "Subscription", "split_event_id"]


def split_event_id(event_id: str | None) -> tuple[str, int] | None:
    """``"{uploadId}:{seq}"`` (an SSE ``Last-Event-ID``) as (upload id, seq); None when it
    is not one."""
    if not event_id or ":" not in event_id:
        return None
    upload_id, _, seq = event_id.rpartition(":")
    return (upload_id, int(seq)) if seq.isdigit() else None


@attrs.define(eq=False)
class Subscription:
    """A subscriber's view of one channel or branch pattern.

    Iterate it for the events, in order (the iteration ends when it is closed, and raises
    :class:`SubscriberLagged` if it fell too far behind), or call :meth:`get` / :meth:`aget`
    with a timeout. ``snapshot`` is the folded status of the upload at the moment of
    subscribing (for a branch pattern, ``snapshots`` holds one per known upload).
    """

    channel: str
    snapshots: tuple[UploadStatus, ...]
    buffer_size: int
    _fanout: FanOut | None = attrs.field(repr=False)
    _items: deque[ProgressEvent] = attrs.field(factory=deque, repr=False)
    _cond: threading.Condition = attrs.field(factory=threading.Condition, repr=False)
    _closed: SubscriptionClosed | None = attrs.field(default=None, repr=False)
    _wakers: set[Callable[[], None]] = attrs.field(factory=set, repr=False)

    @property
    def is_pattern(self) -> bool:
        """Whether this subscription is for a whole branch (``upload:{branch}:*``)."""
        return self.channel.endswith(":*")

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
        with self._cond:
            return len(self._items)

    # -- the fan-out's side (called with its lock held) -------------------------------------

    def _push(self, event: ProgressEvent) -> bool:
        """Buffer an event; False when the subscriber lagged and was cut off."""
        with self._cond:
            if self._closed is not None:
                return False
            if len(self._items) >= self.buffer_size:
                self._items.clear()  # free the memory now; the client resumes by Last-Event-ID
                self._end(
                    SubscriberLagged(
                        f"subscriber of {self.channel} fell {self.buffer_size} events behind "
                        "and was disconnected; reconnect with the last event id you saw"
                    )
                )
                return False
            self._items.append(event)
            self._cond.notify_all()
            self._wake()
            return True

    def _end(self, reason: SubscriptionClosed) -> None:
        with self._cond:
            if self._closed is None:
                self._closed = reason
            self._cond.notify_all()
            self._wake()

    def _wake(self) -> None:
        for waker in list(self._wakers):
            waker()

    # -- the subscriber's side ------------------------------------------------------------

    def _take(self) -> ProgressEvent | None:
        if self._items:
            return self._items.popleft()
        if self._closed is not None:
            raise self._closed
        return None

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None when the
        time ran out. Raises :class:`SubscriptionClosed` once closed and drained, and
        :class:`SubscriberLagged` if the subscriber was cut off."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                event = self._take()
                if event is not None:
                    return event
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None:
        """:meth:`get` for asyncio: waits on the event loop, not in a thread."""
        # Imported here: only asyncio hosts call this, and their loop has loaded asyncio.
        import asyncio  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def waker() -> None:
            # The loop may have closed under us; then nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ready.set)

        with self._cond:
            event = self._take()
            if event is not None:
                return event
            self._wakers.add(waker)
        try:
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                with self._cond:
                    event = self._take()
                    if event is not None:
                        return event
                    ready.clear()
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    return None
                try:
                    await asyncio.wait_for(ready.wait(), left)
                except asyncio.TimeoutError:
                    return None
        finally:
            with self._cond:
                self._wakers.discard(waker)

    def close(self) -> None:
        """End the subscription: the hub stops delivering to it and iteration ends."""
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            fanout._unsubscribe(self)
        self._end(SubscriptionClosed(f"subscription to {self.channel} closed"))

    def __iter__(self) -> Iterator[ProgressEvent]:
        while True:
            try:
                event = self.get()
            except SubscriberLagged:
                raise
            except SubscriptionClosed:
                return
            if event is not None:
                yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@attrs.define(eq=False)
class _Channel:
    status: UploadStatus
    replay: deque[tuple[int, ProgressEvent]]


@attrs.frozen
class FanOutStats:
    """Counters of a :class:`FanOut` since it was made."""

    subscribers: int
    channels: int
    dispatched: int
    delivered: int
    duplicates: int
    malformed: int
    lagged: int


@attrs.define(eq=False)
class FanOut:
    """Subscribers by channel and branch pattern, and each channel's status and replay.

    ``buffer_size`` events at most wait for a subscriber before it is cut off,
    ``replay_size`` events per channel are kept for resuming, ``max_channels`` channels are
    remembered."""

    buffer_size: int = attrs.field(default=1000, validator=at_least(1))
    replay_size: int = attrs.field(default=1000, validator=at_least(0))
    max_channels: int = attrs.field(default=10_000, validator=at_least(1))

    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _channels: OrderedDict[str, _Channel] = attrs.field(init=False, factory=OrderedDict)
    _exact: dict[str, set[Subscription]] = attrs.field(init=False, factory=dict)
    _patterns: dict[str, set[Subscription]] = attrs.field(init=False, factory=dict)
    _arrivals: Iterator[int] = attrs.field(init=False, factory=itertools.count)
    _counts: dict[str, int] = attrs.field(
        init=False,
        factory=lambda: dict.fromkeys(
            ("dispatched", "delivered", "duplicates", "malformed", "lagged"), 0
        ),
    )
    _closed: bool = attrs.field(init=False, default=False)

    def stats(self) -> FanOutStats:
        """The counters now."""
        with self._lock:
            return FanOutStats(
                subscribers=sum(len(s) for s in (*self._exact.values(), *self._patterns.values())),
                channels=len(self._channels),
                **self._counts,
            )

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(
        self, channel: str, last_event_id: str | None = None, *, buffer_size: int | None = None
    ) -> Subscription:
        """Subscribe to ``upload:{branch}:{uploadId}`` or ``upload:{branch}:*``; with
        ``last_event_id``, the events after it still in the replay buffers come first. Raises
        :class:`~transflow.errors.ChannelError` for a malformed channel and
        :class:`SubscriptionClosed` once :meth:`close` was called."""
        _branch, upload_id = parse_channel(channel)
        size = buffer_size or self.buffer_size
        with self._lock:
            if self._closed:
                raise SubscriptionClosed("the progress hub has stopped; subscribe to a running hub")
            if upload_id is None:
                matching = [c for c in self._channels if channel_matches(channel, c)]
                snapshots = tuple(self._channels[c].status for c in matching)
                replay = self._replay_pattern(matching, last_event_id)
            else:
                known = self._channels.get(channel)
                snapshots = (known.status if known else UploadStatus(channel),)
                replay = self._replay_exact(known, upload_id, last_event_id)
            sub = Subscription(channel, snapshots, size, self, deque(replay[-size:]))
            registry = self._patterns if upload_id is None else self._exact
            registry.setdefault(channel, set()).add(sub)
        return sub

    def _replay_exact(
        self, known: _Channel | None, upload_id: str, last_event_id: str | None
    ) -> list[ProgressEvent]:
        resume = split_event_id(last_event_id)
        if known is None or resume is None or resume[0] != upload_id:
            return []
        return [e for _, e in known.replay if e.seq is not None and e.seq > resume[1]]

    def _replay_pattern(
        self, matching: list[str], last_event_id: str | None
    ) -> list[ProgressEvent]:
        resume = split_event_id(last_event_id)
        if resume is None:
            return []
        after: int | None = None
        for name in matching:
            for n, event in self._channels[name].replay:
                if event.event_id == last_event_id:
                    after = n
        if after is None:
            return []  # too old for the buffers: the snapshots carry the state
        merged = [(n, e) for name in matching for n, e in self._channels[name].replay if n > after]
        return [e for _, e in sorted(merged, key=lambda pair: pair[0])]

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
            subs = [s for group in (*self._exact.values(), *self._patterns.values()) for s in group]
            self._exact.clear()
            self._patterns.clear()
        for sub in subs:
            sub._fanout = None
            sub._end(SubscriptionClosed(f"{why}; {sub.channel} ended"))

    # -- dispatching ----------------------------------------------------------------------

    def _channel(self, name: str) -> _Channel:
        known = self._channels.get(name)
        if known is None:
            known = self._channels[name] = _Channel(
                UploadStatus(name), deque(maxlen=self.replay_size)
            )
            while len(self._channels) > self.max_channels:
                self._channels.popitem(last=False)
        else:
            self._channels.move_to_end(name)
        return known

    def malformed(self) -> None:
        """Count a message that was not an event (the caller logs and drops it)."""
        with self._lock:
            self._counts["malformed"] += 1

    def dispatch(self, event: ProgressEvent, *, pattern: str | None = None) -> int:
        """Fold ``event`` into its channel and hand it to every matching subscriber; returns
        how many got it (0 for a redelivery: an event whose ``seq`` is not after the last one
        folded). ``pattern`` is the event's branch pattern, when the caller parsed it
        already."""
        pattern = pattern or branch_channel(parse_channel(event.channel)[0])
        with self._lock:
            known = self._channel(event.channel)
            last = known.status.last_seq
            if event.seq is not None and last is not None and event.seq <= last:
                self._counts["duplicates"] += 1  # a redelivery: subscribers already have it
                return 0
            known.status = fold_event(known.status, event)
            known.replay.append((next(self._arrivals), event))
            targets = [*self._exact.get(event.channel, ()), *self._patterns.get(pattern, ())]
            delivered = 0
            for sub in targets:
                if sub._push(event):
                    delivered += 1
                else:
                    self._counts["lagged"] += 1
                    self._forget(sub)
                    sub._fanout = None
            self._counts["dispatched"] += 1
            self._counts["delivered"] += delivered
        return delivered
