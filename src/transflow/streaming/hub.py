"""ProgressHub: the one consumer of the progress queue in a process, fanning events out to
local subscribers.

SQS does not fan out: a message goes to one receiver. So each process runs one hub, which
long-polls the progress queue (through a :class:`~transflow._aws.poller.QueuePoller`), parses
each message and hands the event to its :class:`~transflow.streaming.fanout.FanOut`, which
folds it into its upload's status, keeps a bounded replay buffer per channel and passes it to
every subscriber whose channel matches; then the message is deleted. Subscribers never touch
SQS.

Memory is bounded everywhere: each subscriber's buffer (a slow client is cut off with
:class:`~transflow.errors.SubscriberLagged` rather than slowing the others), each channel's
replay buffer, and the number of channels remembered (least recently used are forgotten).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from transflow._aws.emf import emit
from transflow._aws.poller import PollerStats, QueuePoller, check_client_pool
from transflow._wire.channels import branch_channel, parse_channel
from transflow._wire.limits import MAX_VISIBILITY_TIMEOUT
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProgressEvent
from transflow._wire.options import at_least, between, positive
from transflow.errors import ChannelError, EventFormatError, SubscriptionDenied
from transflow.streaming.fanout import FanOut, FanOutStats, Subscription

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["HubStats", "ProgressHub", "Subscription"]

log = logging.getLogger(__name__)

Authorize = Callable[[Any, str], bool]


@attrs.frozen
class HubStats(FanOutStats):
    """Counters since start: the fan-out's, and the poller's."""

    poller: PollerStats


@attrs.define(eq=False)
class ProgressHub:
    """Consumes the progress queue and dispatches each event to the matching subscribers.

    One per process: two hubs on one queue in one process would split the events between
    them. ``authorize(principal, channel)`` decides who may subscribe to what. Every option
    is checked here: one out of range raises :class:`~transflow.errors.ConfigError`.
    """

    sqs: SQSClient
    progress_queue_url: str
    authorize: Authorize | None = None
    buffer_size: int = attrs.field(default=1000, validator=at_least(1))
    replay_size: int = attrs.field(default=1000, validator=at_least(0))
    max_channels: int = attrs.field(default=10_000, validator=at_least(1))
    concurrency: int = attrs.field(default=4, validator=at_least(1))
    max_in_flight: int = attrs.field(default=40, validator=at_least(1))
    wait_time_seconds: int = attrs.field(default=20, validator=between(0, 20))
    visibility_timeout: int = attrs.field(
        default=30, validator=between(1, MAX_VISIBILITY_TIMEOUT, " (12 hours)")
    )
    drain_timeout: float = attrs.field(default=5.0, validator=positive)

    _fanout: FanOut = attrs.field(init=False)
    _poller: QueuePoller | None = attrs.field(init=False, default=None)
    _emitted: dict[str, int] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        check_client_pool(self.sqs)
        self._fanout = FanOut(self.buffer_size, self.replay_size, self.max_channels)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> ProgressHub:
        """Start consuming the progress queue; returns self."""
        self.poller.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop consuming and close every subscription; returns whether the poller stopped
        within ``timeout``."""
        stopped = self.poller.stop(timeout)
        self._fanout.close("the progress hub stopped")
        return stopped

    def __enter__(self) -> ProgressHub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def poller(self) -> QueuePoller:
        """The queue poller under the hub (for its stats and settings); made when first
        needed, at :meth:`start` at the latest."""
        if self._poller is None:
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
        return self._poller

    def stats(self) -> HubStats:
        """Counters since start, and the poller's."""
        return HubStats(**attrs.asdict(self._fanout.stats()), poller=self.poller.stats())

    def emit_metrics(self) -> HubStats:
        """Write the hub's metrics in CloudWatch EMF (:mod:`transflow._aws.emf`): connected
        subscribers now, events delivered and subscribers cut off for lagging since the last
        call. Call it on a timer (every minute, say); returns the stats it read."""
        stats = self.stats()
        last = self._emitted or {"delivered": 0, "lagged": 0}
        self._emitted = {"delivered": stats.delivered, "lagged": stats.lagged}
        emit(
            {
                "ConnectedSubscribers": (stats.subscribers, "Count"),
                "EventsDelivered": (stats.delivered - last["delivered"], "Count"),
                "LaggedSubscribers": (stats.lagged - last["lagged"], "Count"),
            },
            {"Component": "hub"},
            properties={"channels": stats.channels},
        )
        return stats

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
        parse_channel(channel)  # a malformed channel is a ChannelError before authorize runs
        if self.authorize is not None and not self.authorize(principal, channel):
            raise SubscriptionDenied(
                f"not allowed to subscribe to {channel}; the host's authorize hook refused it"
            )
        return self._fanout.subscribe(channel, last_event_id, buffer_size=buffer_size)

    # -- dispatching ----------------------------------------------------------------------

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
        self._fanout.malformed()

    def dispatch(self, event: ProgressEvent, *, _pattern: str | None = None) -> int:
        """Fold ``event`` into its channel and hand it to every matching subscriber; returns
        how many got it. The hub calls this for each message; tests and hosts that receive
        events another way may call it too."""
        return self._fanout.dispatch(event, pattern=_pattern)
