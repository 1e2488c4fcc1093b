"""ProgressHub: the one consumer of the progress queue in a process, fanning events out to
local subscribers.

SQS does not fan out: a message goes to one receiver. So each process runs one hub, which
long-polls the progress queue (through a :class:`~transflow._aws.poller.QueuePoller`), folds each
event into its upload's status, keeps a bounded replay buffer per channel, hands the event to
every subscriber whose channel matches, and deletes the message. Subscribers never touch SQS.

Memory is bounded everywhere: each subscriber's buffer (a slow client is cut off with
:class:`~transflow.errors.SubscriberLagged` rather than slowing the others), each channel's
replay buffer, and the number of channels remembered (least recently used are forgotten).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from transflow._aws.poller import PollerStats, QueuePoller
from transflow._wire.channels import branch_channel, channel_matches, parse_channel
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProgressEvent
from transflow.errors import (
    ChannelError,
    EventFormatError,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionDenied,
)
from transflow.streaming.snapshot import UploadStatus, fold_event

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["HubStats", "ProgressHub", "Subscription"]

log = logging.getLogger(__name__)

Authorize = Callable[[Any, str], bool]


def _split_event_id(event_id: str | None) -> tuple[str, int] | None:
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
    _hub: ProgressHub | None = attrs.field(repr=False)
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

    # -- the hub's side (called with the hub's lock held) ---------------------------------

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
        # Imported here: a loop is running, so asyncio is loaded already, and WSGI hosts
        # never pay for it.
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
        hub, self._hub = self._hub, None
        if hub is not None:
            hub._unsubscribe(self)
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
class HubStats:
    """Counters since start."""

    subscribers: int
    channels: int
    dispatched: int
    delivered: int
    duplicates: int
    malformed: int
    lagged: int
    poller: PollerStats


@attrs.define(eq=False)
class ProgressHub:
    """Consumes the progress queue and dispatches each event to the matching subscribers.

    One per process: two hubs on one queue in one process would split the events between
    them. ``authorize(principal, channel)`` decides who may subscribe to what.
    """

    sqs: SQSClient
    progress_queue_url: str
    authorize: Authorize | None = None
    buffer_size: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    replay_size: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    max_channels: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))
    concurrency: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    max_in_flight: int = attrs.field(default=40, validator=attrs.validators.ge(1))
    wait_time_seconds: int = 20
    visibility_timeout: int = 30
    drain_timeout: float = 5.0

    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _channels: OrderedDict[str, _Channel] = attrs.field(init=False, factory=OrderedDict)
    _exact: dict[str, set[Subscription]] = attrs.field(init=False, factory=dict)
    _patterns: dict[str, set[Subscription]] = attrs.field(init=False, factory=dict)
    _arrivals: Iterator[int] = attrs.field(init=False, factory=itertools.count)
    _poller: QueuePoller = attrs.field(init=False)
    _counts: dict[str, int] = attrs.field(init=False, factory=dict)
    _stopped: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self._poller = QueuePoller(
            self.sqs,
            self.progress_queue_url,
            self._on_message,
            concurrency=self.concurrency,
            max_in_flight=self.max_in_flight,
            wait_time_seconds=self.wait_time_seconds,
            visibility_timeout=self.visibility_timeout,
            drain_timeout=self.drain_timeout,
            name="transflow-hub",
        )
        self._counts = dict.fromkeys(
            ("dispatched", "delivered", "duplicates", "malformed", "lagged"), 0
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> ProgressHub:
        """Start consuming the progress queue; returns self."""
        self._poller.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop consuming and close every subscription; returns whether the poller stopped
        within ``timeout``."""
        stopped = self._poller.stop(timeout)
        with self._lock:
            self._stopped = True
            subs = [s for group in (*self._exact.values(), *self._patterns.values()) for s in group]
            self._exact.clear()
            self._patterns.clear()
        for sub in subs:
            sub._hub = None
            sub._end(SubscriptionClosed(f"the progress hub stopped; {sub.channel} ended"))
        return stopped

    def __enter__(self) -> ProgressHub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def poller(self) -> QueuePoller:
        """The queue poller under the hub (for its stats and settings)."""
        return self._poller

    def stats(self) -> HubStats:
        """Counters since start, and the poller's."""
        with self._lock:
            return HubStats(
                subscribers=sum(len(s) for s in (*self._exact.values(), *self._patterns.values())),
                channels=len(self._channels),
                poller=self._poller.stats(),
                **self._counts,
            )

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        last_event_id: str | None = None,
        *,
        principal: Any = None,
        buffer_size: int | None = None,
    ) -> Subscription:
        """Subscribe to ``upload:{branch}:{uploadId}`` or ``upload:{branch}:*``.

        With ``last_event_id`` (the SSE ``Last-Event-ID``), the events after it that are still
        in the replay buffer come first. The snapshot is the status now, including events
        replayed: those with ids up to ``snapshot.last_event_id`` are already folded in.
        Raises :class:`ChannelError` for a malformed channel, :class:`SubscriptionDenied`
        when ``authorize`` refuses, :class:`SubscriptionClosed` when the hub has stopped.
        """
        _branch, upload_id = parse_channel(channel)
        if self.authorize is not None and not self.authorize(principal, channel):
            raise SubscriptionDenied(
                f"not allowed to subscribe to {channel}; the host's authorize hook refused it"
            )
        size = buffer_size or self.buffer_size
        with self._lock:
            if self._stopped:
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
        resume = _split_event_id(last_event_id)
        if known is None or resume is None or resume[0] != upload_id:
            return []
        return [e for _, e in known.replay if e.seq is not None and e.seq > resume[1]]

    def _replay_pattern(
        self, matching: list[str], last_event_id: str | None
    ) -> list[ProgressEvent]:
        resume = _split_event_id(last_event_id)
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
            registry = self._patterns if sub.is_pattern else self._exact
            group = registry.get(sub.channel)
            if group is not None:
                group.discard(sub)
                if not group:
                    del registry[sub.channel]

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

    def _on_message(self, message: ReceivedMessage) -> None:
        try:
            event = ProgressEvent.from_json(message.body)
            branch, upload_id = parse_channel(event.channel)
        except (EventFormatError, ChannelError) as exc:
            self._malformed(message, str(exc))
            return
        if upload_id is None:
            self._malformed(message, f"an event cannot be sent to the pattern {event.channel}")
            return
        self.dispatch(event, _pattern=branch_channel(branch))

    def _malformed(self, message: ReceivedMessage, why: str) -> None:
        # It will never parse: returning normally deletes it and keeps its group moving.
        log.error("dropping malformed progress message %s: %s", message.message_id, why)
        with self._lock:
            self._counts["malformed"] += 1

    def dispatch(self, event: ProgressEvent, *, _pattern: str | None = None) -> int:
        """Fold ``event`` into its channel and hand it to every matching subscriber; returns
        how many got it. The hub calls this for each message; tests and hosts that receive
        events another way may call it too."""
        pattern = _pattern or branch_channel(parse_channel(event.channel)[0])
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
                    registry = self._patterns if sub.is_pattern else self._exact
                    registry.get(sub.channel, set()).discard(sub)
                    sub._hub = None
            self._counts["dispatched"] += 1
            self._counts["delivered"] += delivered
        return delivered
