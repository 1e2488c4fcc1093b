"""ProgressHub: the one consumer of the progress queue in a process, fanning events out to
local subscribers.

SQS does not fan out: a message goes to one receiver. So each process runs one hub, which
long-polls the progress queue (through a :class:`~transflow._aws.poller.QueuePoller`), parses
each message and hands the event to its :class:`~transflow.streaming.fanout.FanOut`, which
folds it into its upload's status, keeps a bounded replay buffer per channel and passes it to
every subscriber whose channel matches; then the message is deleted. Subscribers never touch
SQS.

Memory is bounded everywhere: each subscriber's buffer (a slow client is cut off with
:class:`~transflow.errors.SubscriberLaggedError` rather than slowing the others), each channel's
replay buffer, and the number of channels remembered (least recently used are forgotten).

Fan-out mode (a :class:`~transflow.processing.destination.ProgressTopic`): for more than
one stream process. The hub then makes its own instance queue at :meth:`ProgressHub.start`,
subscribed to the SNS FIFO progress topic (:mod:`transflow.streaming.instances`), sends its
heartbeat on a timer, sweeps the queues of crashed instances, and unsubscribes and deletes its
queue at :meth:`stop`. A hub that finds its queue or subscription gone (a receive answered
``QueueDoesNotExist``, a heartbeat refused, the subscription missing) makes a new queue and
subscription, and ends its streams with :class:`~transflow.errors.InstanceQueueLostError` so their
clients reconnect and resume (``HubStats.instance_recreated`` counts it).

Processes. A hub belongs to the process that started it. One started before a fork
(gunicorn ``--preload``, multiprocessing) is noticed by the process id: in the child, the
first :meth:`~ProgressHub.subscribe` restarts it in fan-out mode (a fresh instance queue and
poller for the child) and raises :class:`~transflow.errors.HubForkedError` on the shared
queue (where the parent's hub and the child's would split the events); in fan-out mode the
parent logs a warning that it keeps consuming, on the shared queue it stops (see below).

One reader per shared queue. On a :class:`~transflow.processing.destination.ProgressQueue`
the hub takes the queue's lease (:mod:`transflow.streaming.lease`) before it consumes: a
second hub process on the same queue consumes nothing, logs an ERROR at start and refuses
its subscribers with :class:`~transflow.errors.HubLeaseHeldError` (the SSE apps answer 503
with the reason). A process that forks after starting its hub on the shared queue (the
gunicorn ``--preload`` master) stops consuming and gives the lease up. The fan-out core
counts the events of an attempt that never arrive (``gaps``) and the hub logs them at ERROR,
once per ``gap_log_every`` seconds.

Keepers. Each started hub runs one keeper thread: the lease keeper on the shared queue
(renew, take over, step down), the instance keeper in fan-out mode (heartbeat, sweep, a new
instance queue in place of a lost one). :meth:`ProgressHub.stop` joins it before it takes
the hub's locks, since either keeper takes one of them.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from transflow._aws.emf import emit
from transflow._aws.poller import PollerStats, QueuePoller, check_client_pool
from transflow._wire.channels import parse_channel
from transflow._wire.limits import MAX_VISIBILITY_TIMEOUT
from transflow._wire.messages import ReceivedMessage
from transflow._wire.model import ProgressEvent
from transflow._wire.packs import packed_items
from transflow._wire.validators import at_least, between, instance_of, positive
from transflow.errors import (
    ChannelError,
    ConfigError,
    EventFormatError,
    HubForkedError,
    HubLeaseHeldError,
    InstanceQueueLostError,
    SubscriptionClosedError,
    SubscriptionDeniedError,
)
from transflow.processing.destination import ProgressDestination, ProgressTopic
from transflow.streaming.fanout import FanOut, FanOutStats, Subscription
from transflow.streaming.instances import InstanceQueue, is_missing, sweep_instance_queues
from transflow.streaming.latency import Quantiles
from transflow.streaming.lease import QueueLease
from transflow.streaming.shutdown import stop_hubs_at_unhandled_sigterm
from transflow.streaming.snapshot import UploadState, UploadStatus
from transflow.streaming.waiters import loop_lag

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from transflow.config import TransflowConfig

__all__ = ["HubStats", "ProgressHub"]

log = logging.getLogger(__name__)

# Long enough to gather a busy hub's deletes ten to a call; short enough that an upload's
# next events, held back on a FIFO queue until its last ones are deleted, reach the
# browser with at most this much more delay (only while receives come back full).
_DELETE_WINDOW = 0.5
# After a receive that came back short: events of several uploads gather into the next
# receive (and its one delete) instead of one receive and one delete per burst.
_RECEIVE_PAUSE = 0.25

Authorize = Callable[[Any, str], bool]
SnapshotSource = Callable[[str], "UploadStatus | None"]
"""``source(channel)``: the status of an upload the hub has not seen (None: unknown); see
:class:`~transflow.streaming.records.StatusRecordSnapshots`."""

# Hubs running in this process, so a fork can tell the parent's which it keeps consuming.
_running: weakref.WeakSet[ProgressHub] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_hooks_installed = False


def _install_process_hooks() -> None:
    """Install the at-fork and at-exit hooks, once, when the first hub starts: importing this
    module must not change how the process forks or exits (nothing runs at import)."""
    global _hooks_installed  # noqa: PLW0603 - once per process, like the hooks themselves
    with _hooks_lock:
        if _hooks_installed:
            return
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_parent=_after_fork_in_parent)
        atexit.register(stop_running_hubs)
        _hooks_installed = True


def _after_fork_in_parent() -> None:
    for hub in list(_running):
        hub._forked_in_parent()


def stop_running_hubs() -> None:
    """Stop this process's running fan-out hubs, so their instance queues go now rather than
    at a sweep, and its hubs holding a shared queue's lease, so it is free now rather than
    at expiry: at a normal interpreter exit (for a host that never calls stop()), and at a
    SIGTERM nothing else handles (:mod:`transflow.streaming.shutdown`)."""
    for hub in list(_running):
        if (hub.fanout_mode or hub._lease is not None) and hub._pid == os.getpid():
            try:
                hub.stop(timeout=hub.drain_timeout)
            except Exception:
                log.exception("fan-out: stopping the hub at exit failed; a sweep will clean up")


def _fresh_connections(client: Any) -> None:
    """Forget the connections a client inherited through a fork: the parent still uses the
    same sockets, and two processes on one connection read each other's responses."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    close = getattr(session, "close", None)
    if close is not None:
        close()


@attrs.frozen
class HubStats(FanOutStats):
    """Counters since start: the fan-out's, and the poller's (the poller of the current
    instance queue, in fan-out mode). ``instance_recreated``: times a fan-out hub found its
    instance queue or subscription gone and made new ones. ``lease``: on the shared
    progress queue, ``"held"`` (this hub reads it), ``"standby"`` (another hub does: this
    one refuses its subscribers), ``"forked"`` (this process forked after starting the hub:
    it stopped reading), ``"unleased"`` (the lease tag could not be read or written: the hub
    reads without it); ``"none"`` in fan-out mode or before start. ``written``: how long
    recent events took from dispatch to being written to a client; ``loop_lag``: how late
    the event loops of this process ran their stream timers (see
    :mod:`transflow.streaming.waiters`), the cost an operator sees first as subscribers
    grow."""

    poller: PollerStats
    instance_recreated: int = 0
    lease: str = "none"
    written: Quantiles = attrs.field(factory=Quantiles)
    loop_lag: Quantiles = attrs.field(factory=Quantiles)


@attrs.define(eq=False)
class ProgressHub:
    """Consumes the progress queue and dispatches each event to the matching subscribers.

    ``progress`` says where progress goes (see :meth:`from_config`): a
    :class:`~transflow.processing.destination.ProgressQueue`, read by this hub alone (it
    takes the queue's lease for ``lease_sec`` seconds, renewed; a second hub on the queue
    consumes nothing and refuses subscribers with :class:`~transflow.errors.HubLeaseHeldError`);
    or, for more than one process, a
    :class:`~transflow.processing.destination.ProgressTopic` with ``sns`` and
    ``instance_prefix`` (from :attr:`TransflowConfig.instance_queue_prefix
    <transflow.TransflowConfig>`): each hub then gets every event through its own instance
    queue. ``authorize(principal, channel)`` decides who may subscribe to what. Events of
    an attempt missing for ``gap_wait`` seconds while later ones came are counted
    (``stats().gaps``) and logged at ERROR at most once per ``gap_log_every`` seconds.
    ``snapshot_source`` gives the snapshot of an upload the hub has not seen (a
    :class:`~transflow.streaming.records.StatusRecordSnapshots`). ``receive_pause``: seconds
    to wait after a receive that brought events but fewer than ten, so the next receive
    (and its delete) carries more (0.25 by default, at most 5; up to that much latency;
    :attr:`QueuePoller.receive_pause <transflow._aws.poller.QueuePoller.receive_pause>`).
    ``delete_window``: while
    receives come back full, seconds a dispatched event's message may wait so that up to
    ten are deleted in one call (see
    :attr:`QueuePoller.delete_window <transflow._aws.poller.QueuePoller.delete_window>`):
    0.5 by default, at most a third of ``visibility_timeout``, 0 to delete each receive's
    at once; the messages of uploads that have ended (``done``, ``cancelled``, an
    ``error`` not retried) wait up to it on a thin queue too, so the deletes of several
    receives go in one call. The shared progress queue only: instance queues delete at
    once. Every option is checked here: one out of range raises
    :class:`~transflow.errors.ConfigError`.
    """

    sqs: SQSClient
    progress: ProgressDestination = attrs.field(validator=instance_of(ProgressDestination))
    authorize: Authorize | None = None
    buffer_size: int = attrs.field(default=1000, validator=at_least(1))
    buffer_bytes: int = attrs.field(default=8 << 20, validator=at_least(1), kw_only=True)
    replay_size: int = attrs.field(default=1000, validator=at_least(0))
    max_channels: int = attrs.field(default=10_000, validator=at_least(1))
    replay_bytes: int = attrs.field(default=1 << 20, validator=at_least(0))
    replay_total_bytes: int = attrs.field(default=256 << 20, validator=at_least(0))
    concurrency: int = attrs.field(default=4, validator=at_least(1))
    max_in_flight: int = attrs.field(default=40, validator=at_least(1))
    wait_time_seconds: int = attrs.field(default=20, validator=between(0, 20))
    visibility_timeout: int = attrs.field(
        default=30, validator=between(1, MAX_VISIBILITY_TIMEOUT, " (12 hours)")
    )
    drain_timeout: float = attrs.field(default=5.0, validator=positive)
    sns: SNSClient | None = None
    instance_prefix: str | None = None
    instance_stale_after: float = attrs.field(default=300.0, validator=at_least(3))
    snapshot_source: SnapshotSource | None = None
    lease_sec: float = attrs.field(default=30.0, validator=positive, kw_only=True)
    gap_wait: float = attrs.field(default=30.0, validator=positive, kw_only=True)
    gap_log_every: float = attrs.field(default=60.0, validator=positive, kw_only=True)
    receive_pause: float = attrs.field(default=_RECEIVE_PAUSE, kw_only=True)
    delete_window: float = attrs.field(
        default=attrs.Factory(
            lambda self: min(_DELETE_WINDOW, self.visibility_timeout / 3), takes_self=True
        ),
        kw_only=True,
    )

    _fanout: FanOut = attrs.field(init=False)
    _poller: QueuePoller | None = attrs.field(init=False, default=None)
    _emitted: dict[str, int] = attrs.field(init=False, factory=dict)
    _pid: int | None = attrs.field(init=False, default=None)
    _life: threading.RLock = attrs.field(init=False, factory=threading.RLock)
    _instance: InstanceQueue | None = attrs.field(init=False, default=None)
    _keeper: threading.Thread | None = attrs.field(init=False, default=None)
    _stopping: threading.Event = attrs.field(init=False, factory=threading.Event)
    _warned_fork: bool = attrs.field(init=False, default=False)
    # Set to wake the keeper: stop() or a lost instance queue.
    _wake: threading.Event = attrs.field(init=False, factory=threading.Event)
    _lost: InstanceQueue | None = attrs.field(init=False, default=None)
    _recreated: int = attrs.field(init=False, default=0)
    # Held while the keeper swaps queue and poller; stop() reads them under it.
    _swap: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _lease: QueueLease | None = attrs.field(init=False, default=None)
    _lease_state: str = attrs.field(init=False, default="none")
    # Why subscribers are refused now (standby, or a forked parent), and with what.
    _refusal: tuple[type[SubscriptionClosedError], str] | None = attrs.field(
        init=False, default=None
    )
    _gaps_unlogged: int = attrs.field(init=False, default=0)
    _gaps_logged_at: float | None = attrs.field(init=False, default=None)
    # The message groups (uploads) whose last event dispatched ended them: their deletes
    # may linger (see _ended). Insertion-ordered, the oldest forgotten past max_channels.
    _ended_groups: dict[str, bool] = attrs.field(init=False, factory=dict)
    _ended_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        check_client_pool(self.sqs)
        if not 0 <= self.receive_pause <= 5:
            raise ConfigError(
                f"receive_pause={self.receive_pause!r}: must be between 0 and 5 seconds (it "
                "delays the events it waits for)"
            )
        if not 0 <= self.delete_window <= self.visibility_timeout / 3:
            raise ConfigError(
                f"delete_window={self.delete_window!r}: must be between 0 and a third of "
                f"visibility_timeout ({self.visibility_timeout / 3:g} s), so an event is "
                "deleted before the queue could deliver it again"
            )
        if self.fanout_mode and (self.sns is None or not self.instance_prefix):
            raise ConfigError(
                f"ProgressHub in fan-out mode ({self.progress.address}) needs sns= (an SNS "
                "client) and instance_prefix= (TransflowConfig.instance_queue_prefix); "
                "ProgressHub.from_config(config, sqs=..., sns=...) passes both"
            )
        self._fanout = self._new_fanout()

    def _new_fanout(self) -> FanOut:
        return FanOut(
            self.buffer_size,
            self.replay_size,
            self.max_channels,
            replay_bytes=self.replay_bytes,
            replay_total_bytes=self.replay_total_bytes,
            buffer_bytes=self.buffer_bytes,
            gap_wait=self.gap_wait,
        )

    @classmethod
    def from_config(
        cls,
        config: TransflowConfig,
        *,
        sqs: SQSClient,
        sns: SNSClient | None = None,
        progress: ProgressDestination | None = None,
        **options: Any,
    ) -> ProgressHub:
        """A hub for ``config``, reading where progress goes: ``progress``, else
        :meth:`ProgressDestination.from_config
        <transflow.processing.destination.ProgressDestination.from_config>`. In fan-out mode
        (a topic) with ``sns`` and the config's instance queue prefix and staleness.
        ``options`` are the hub's other fields."""
        where = progress or ProgressDestination.from_config(config)
        if isinstance(where, ProgressTopic):
            return cls(
                sqs,
                where,
                sns=sns,
                instance_prefix=config.instance_queue_prefix,
                instance_stale_after=config.sqs.instance_stale_sec,
                **options,
            )
        return cls(sqs, where, **options)

    @property
    def fanout_mode(self) -> bool:
        """Whether the hub reads its own instance queue, subscribed to the progress topic."""
        return isinstance(self.progress, ProgressTopic)

    @property
    def queue_url(self) -> str | None:
        """The queue the hub reads: its instance queue in fan-out mode (None until started),
        else the progress queue."""
        if self.fanout_mode:
            return self._instance.url if self._instance is not None else None
        return self.progress.address

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> ProgressHub:
        """Start consuming (in fan-out mode: make and subscribe the instance queue first; on
        the shared queue: take its lease first, or stand by); returns self."""
        with self._life:
            if self._pid is not None and self._pid != os.getpid():
                self._restart_in_child()
                return self
            _install_process_hooks()
            self._pid = os.getpid()
            # Listed before the queue exists: a signal during start() stops the hub (which
            # waits for start() to finish) rather than leave its new queue behind.
            _running.add(self)
            if self.fanout_mode and self._instance is None:
                self._open_instance()
            elif not self.fanout_mode:
                # Started already (any state but "none"): the lease decides, not a 2nd call.
                if self._lease_state == "none":
                    self._take_lease()
                return self
            self.poller.start()
        if self.fanout_mode:
            stop_hubs_at_unhandled_sigterm()
        return self

    # -- the lease on the shared queue ----------------------------------------------------

    def _take_lease(self) -> None:
        """Take the shared queue's lease and consume, or stand by refusing subscribers."""
        lease = QueueLease(self.sqs, self.progress.address, self.lease_sec)
        self._lease, self._refusal = lease, None
        self._stopping = threading.Event()
        try:
            other = lease.acquire()
        except Exception as exc:
            self._lease, self._lease_state = None, "unleased"
            log.error(  # noqa: TRY400 - the cause is the call's error code, not a bug
                "progress hub: could not take the lease on %s (%s), so a second hub process "
                "on this queue would split its events unnoticed (only the gap detector would "
                "see it); this hub reads it without a lease. Allow the stream role "
                "sqs:ListQueueTags, sqs:TagQueue and sqs:UntagQueue on the progress queue "
                "(transflow iam prints the policy)",
                self.progress.address,
                exc,
            )
            self.poller.start()
            return
        if other is None:
            self._lease_state = "held"
            self.poller.start()
        else:
            self._stand_by(other)
        self._keeper = threading.Thread(
            target=self._keep_lease, name="transflow-hub-lease", daemon=True
        )
        self._keeper.start()

    def _stand_by(self, other: str) -> None:
        """Another hub holds the lease: consume nothing, refuse subscribers, say so."""
        assert self._lease is not None
        why = (
            f"another progress hub ({other}) reads the progress queue "
            f"{self.progress.address}, and SQS gives each event to one reader, so this "
            f"process ({self._lease.holder}) serves no streams rather than a part of every "
            "upload's events. Run one stream process per progress queue (gunicorn -w 1 "
            "--threads N, uvicorn without --workers), or, for several processes, set "
            "sqs.progressFanout to 'sns' (every process then gets every event)"
        )
        self._lease_state = "standby"
        self._refusal = (HubLeaseHeldError, why)
        log.error("progress hub: %s", why)

    def _keep_lease(self) -> None:
        lease, stopping = self._lease, self._stopping
        while lease is not None and not stopping.wait(lease.renew_every):
            if self._pid != os.getpid():
                return
            try:
                self._beat(lease, stopping)
            except Exception:
                log.exception("progress hub: renewing the lease on %s failed", lease.url)
            self._report_gaps()

    def _beat(self, lease: QueueLease, stopping: threading.Event) -> None:
        if self._lease_state == "held":
            other = lease.renew()
            if other is None:
                return
            with self._life:
                if stopping.is_set():
                    return
                # Both of us read it as ours once (see transflow.streaming.lease): step down.
                poller, self._poller = self._poller, None
                if poller is not None:
                    poller.request_stop()
                self._stand_by(other)
                fanout, self._fanout = self._fanout, self._new_fanout()
            fanout.close("this process lost the progress queue's lease; reconnect")
        elif self._lease_state == "standby" and lease.acquire() is None:
            with self._life:
                if stopping.is_set():
                    lease.release()
                    return
                self._lease_state, self._refusal = "held", None
                self.poller.start()
            log.warning(
                "progress hub: %s took over the lease on %s and serves streams now",
                lease.holder,
                lease.url,
            )

    def stop(self, timeout: float | None = None) -> bool:
        """Stop consuming and close every subscription (in fan-out mode: unsubscribe and
        delete the instance queue; on the shared queue: give its lease up); returns whether
        the poller stopped within ``timeout``."""
        with self._life:
            _running.discard(self)
            self._stopping.set()
            self._wake.set()
            mine = self._pid is None or self._pid == os.getpid()
            keeper = self._keeper if mine else None
        if keeper is not None:
            # The keeper first, and outside the locks: the lease keeper takes ``_life`` to
            # step down or take over, the instance keeper ``_swap`` to replace a lost queue.
            # Once it has returned it replaces neither queue nor poller nor lease state.
            keeper.join(timeout)
        with self._life, self._swap:
            poller, instance, self._instance = self._poller, self._instance, None
        # Unlocked too: a message handler logging gaps takes ``_life``.
        stopped = poller.stop(timeout) if mine and poller is not None else True
        with self._life:
            # Only once the poller stopped: another hub may take the lease as soon as it goes.
            if self._lease is not None and mine and self._lease_state == "held":
                try:
                    self._lease.release()
                except Exception as exc:
                    # At exit the endpoint may be gone already: no traceback, the lease expires.
                    log.warning("progress hub: releasing the lease failed (%s); it expires", exc)
            if mine and self._lease_state != "none":
                self._lease_state = "none"
            if instance is not None and mine:
                instance.close()
        self._fanout.close("the progress hub stopped")
        return stopped

    def sweep(self, *, propagation: float | None = None) -> tuple[str, ...]:
        """Unsubscribe and delete the instance queues whose heartbeat is older than
        ``instance_stale_after`` seconds plus ``propagation`` (default
        :data:`~transflow.streaming.instances.PROPAGATION_SEC`), by SQS's clock (never this
        hub's own queue); returns their names. The hub runs it on its timer."""
        if not self.fanout_mode:
            return ()
        assert self.sns is not None
        assert self.instance_prefix is not None
        own = self.queue_url
        report = sweep_instance_queues(
            self.sqs,
            self.sns,
            self.progress.address,
            self.instance_prefix,
            stale_after=self.instance_stale_after,
            keep={own} if own else (),
            propagation=propagation,
        )
        return report.deleted

    def _new_instance(self) -> InstanceQueue:
        assert self.sns is not None
        assert self.instance_prefix is not None
        instance = InstanceQueue(self.sqs, self.sns, self.progress.address, self.instance_prefix)
        instance.open()
        return instance

    def _open_instance(self) -> None:
        self._instance = self._new_instance()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lost = None
        self._keeper = threading.Thread(target=self._keep, name="transflow-hub-keeper", daemon=True)
        self._keeper.start()

    def _receive_failed(self, instance: InstanceQueue, exc: Exception) -> bool:
        """The poller of ``instance`` could not receive: a queue that is gone wakes the
        keeper to make a new one (the poller then logs the error without a traceback)."""
        if not is_missing(exc):
            return False
        if instance is self._instance and self._lost is None:
            self._lost = instance
            self._wake.set()
        return True

    def _keep(self) -> None:
        # The heartbeat three times per stale period, so one slow one never gets us swept;
        # sweep the others' leftovers on every third. Woken early by stop() and by a poller
        # whose queue is gone.
        interval = self.instance_stale_after / 3
        stopping, wake = self._stopping, self._wake
        rounds = 0
        due = time.monotonic() + interval
        while True:
            wake.wait(max(0.0, due - time.monotonic()))
            wake.clear()
            if stopping.is_set() or self._pid != os.getpid():
                return
            instance = self._instance
            if instance is None:
                return
            if self._lost is None and time.monotonic() >= due:
                due = time.monotonic() + interval
                rounds += 1
                try:
                    self._heartbeat(instance, sweep=rounds % 3 == 1)
                except Exception:
                    log.exception(
                        "fan-out: the heartbeat of %s failed; trying again", instance.name
                    )
            if self._lost is not None:
                try:
                    self._recreate(self._lost)
                except Exception:
                    log.exception("fan-out: could not replace %s; trying again", instance.name)
                    due = time.monotonic() + min(interval, 5.0)

    def _heartbeat(self, instance: InstanceQueue, *, sweep: bool) -> None:
        try:
            instance.touch()
            gone = not instance.subscribed()
        except Exception as exc:
            if not is_missing(exc):
                raise
            gone = True
        if gone:
            self._lost = instance
        elif sweep:
            self.sweep()

    def _recreate(self, lost: InstanceQueue) -> None:
        """A new instance queue and poller in place of ``lost``, whose queue or subscription
        is gone; then the streams end so their clients resume."""
        log.error(
            "fan-out: instance queue %s or its subscription to %s is gone (swept or deleted "
            "from outside); events published since did not reach this hub. Making a new "
            "queue and ending this hub's streams so their clients reconnect and resume",
            lost.name,
            self.progress.address,
        )
        fresh = self._new_instance()
        with self._swap:
            if not self._stopping.is_set():
                # Not through the ``poller`` property, which takes ``_life``: stop() holds it
                # while it waits for ``_swap``. ``_poller`` is never None meanwhile, so no
                # other thread makes a poller for the old queue.
                self._instance = fresh
                new_poller = self._new_poller()
                old_poller, self._poller = self._poller, new_poller
                new_poller.start()
                self._lost = None
                self._recreated += 1
        if self._instance is not fresh:  # stop() came first: it closes the old one
            fresh.close()
            return
        ended = self._fanout.end_subscribers(
            lambda channel: InstanceQueueLostError(
                f"this hub's instance queue was replaced; {channel} may have missed events: "
                "reconnect with the last event id you saw"
            )
        )
        lost.close()  # a subscription left to a deleted queue breaks the topic's deliveries
        if old_poller is not None:
            old_poller.stop(self.drain_timeout)
        log.info("fan-out: %s replaces %s; %d streams ended", fresh.name, lost.name, ended)

    def _restart_in_child(self) -> None:
        """This hub was started in another process, which forked this one."""
        parent = self._pid
        if not self.fanout_mode:
            raise HubForkedError(
                f"this ProgressHub was started in process {parent}, which forked process "
                f"{os.getpid()}: its thread does not run here, and a second hub on the shared "
                "progress queue would split the events with the first. Start the hub in each "
                "worker (gunicorn post_fork hook, or the ASGI lifespan) and not at import "
                '(gunicorn --preload), or use fan-out mode (sqs.progressFanout: "sns")'
            )
        log.info("fan-out: hub started in process %s restarts in process %s", parent, os.getpid())
        # Nothing inherited is ours: the parent's threads, its queue, its subscribers.
        _fresh_connections(self.sqs)
        _fresh_connections(self.sns)
        self._poller = None
        self._instance = None
        self._keeper = None
        self._swap = threading.Lock()  # the parent's may have been held at the fork
        self._fanout = self._new_fanout()
        self._pid = None
        self.start()

    def _forked_in_parent(self) -> None:
        if not self.fanout_mode and self._lease_state in ("held", "standby", "unleased"):
            self._stop_forked_parent()
            return
        if not self._warned_fork:
            self._warned_fork = True
            log.warning(
                "ProgressHub: process %d forked after starting its hub and keeps consuming "
                "%s; if this process serves no streams (a gunicorn --preload master), start "
                "the hub in each worker instead (see docs/deployment.md)",
                os.getpid(),
                self.queue_url,
            )

    def _stop_forked_parent(self) -> None:
        """A process that forks after starting its hub on the shared queue is a master
        (gunicorn ``--preload``): its children serve, so it must not read their events."""
        why = (
            f"process {os.getpid()} forked after starting its progress hub, so it stopped "
            f"reading {self.progress.address} (a gunicorn --preload master serves no streams "
            "and must not take the workers' events). Start the hub in each worker (gunicorn "
            "post_fork hook, or the ASGI lifespan), or set sqs.progressFanout to 'sns'"
        )
        self._stopping.set()
        if self._poller is not None:
            # What the long poll in flight brings is released (visibility 0), not handled.
            self._poller.request_stop()
        was_held = self._lease_state == "held"
        self._lease_state = "forked"
        self._refusal = (HubForkedError, why)
        log.warning("progress hub: %s", why)
        if was_held and self._lease is not None:
            try:
                self._lease.release()
            except Exception as exc:
                log.warning("progress hub: releasing the lease failed (%s); it expires", exc)

    def __enter__(self) -> ProgressHub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def poller(self) -> QueuePoller:
        """The queue poller under the hub (for its stats and settings); made when first
        needed, at :meth:`start` at the latest."""
        with self._life:  # the lease keeper may make it at the same time
            if self._poller is None:
                self._poller = self._new_poller()
            return self._poller

    def _new_poller(self) -> QueuePoller:
        """A poller of :attr:`queue_url` (the current instance queue in fan-out mode)."""
        url = self.queue_url
        if url is None:
            raise ConfigError(
                "the hub's instance queue exists once the hub started: call start() first"
            )
        return QueuePoller(
            self.sqs,
            url,
            self._on_message,
            concurrency=self.concurrency,
            max_in_flight=self.max_in_flight,
            wait_time_seconds=self.wait_time_seconds,
            visibility_timeout=self.visibility_timeout,
            drain_timeout=self.drain_timeout,
            # An instance queue can be swept or deleted under a live hub (it then makes a
            # new one): deletes held back for it would fail against a missing queue.
            delete_window=0.0 if self.fanout_mode else self.delete_window,
            linger=self._ended,
            receive_pause=self.receive_pause,
            name="transflow-hub",
            on_receive_error=(
                functools.partial(self._receive_failed, self._instance)
                if self._instance is not None
                else None
            ),
        )

    def stats(self) -> HubStats:
        """Counters since start, and the poller's."""
        self._report_gaps()
        return HubStats(
            **attrs.asdict(self._fanout.stats()),
            poller=self._poller_stats(),
            instance_recreated=self._recreated,
            lease=self._lease_state,
            written=self._fanout.written(),
            loop_lag=loop_lag().quantiles(),
        )

    def _report_gaps(self) -> None:
        """Log the gaps found, at ERROR once per ``gap_log_every`` seconds (not per event)."""
        news, channel = self._fanout.take_gaps()
        if not news:
            return
        now = time.monotonic()
        with self._life:
            self._gaps_unlogged += news
            if self._gaps_logged_at is not None and now - self._gaps_logged_at < self.gap_log_every:
                return
            count, self._gaps_unlogged, self._gaps_logged_at = self._gaps_unlogged, 0, now
        if self.fanout_mode:
            cause = (
                "the processor could not send them (its log says 'were not sent'), or they "
                "were removed from this instance's queue"
            )
        else:
            cause = (
                f"most likely another process reads the progress queue {self.progress.address} "
                "and took them (a second stream process: gunicorn -w N, uvicorn --workers N, "
                "another server with the same config); else the processor could not send "
                "them (its log says 'were not sent'). Run one stream process per progress "
                "queue, or set sqs.progressFanout to 'sns'"
            )
        log.error(
            "progress hub: %d progress events never arrived (seqs of an attempt missing for "
            "%.0fs while later ones came; latest on %s): %s",
            count,
            self.gap_wait,
            channel,
            cause,
        )

    def _poller_stats(self) -> PollerStats:
        if self._poller is None and self.queue_url is None:
            zero: dict[str, Any] = dict.fromkeys((f.name for f in attrs.fields(PollerStats)), 0)
            return PollerStats(**{**zero, "state": "created", "last_poll_at": None})
        return self.poller.stats()

    def emit_metrics(self) -> HubStats:
        """Write the hub's metrics in CloudWatch EMF (:mod:`transflow._aws.emf`): connected
        subscribers now, events delivered, subscribers cut off for lagging, events that never
        arrived (gaps) and instance queues made anew since the last call. Call it on a timer
        (every minute, say); also the dispatch->written and loop-lag quantiles
        (milliseconds, over recent samples); returns the stats it read."""
        stats = self.stats()
        last = self._emitted or {"delivered": 0, "lagged": 0, "gaps": 0, "recreated": 0}
        self._emitted = {
            "delivered": stats.delivered,
            "lagged": stats.lagged,
            "gaps": stats.gaps,
            "recreated": stats.instance_recreated,
        }
        emit(
            {
                "ConnectedSubscribers": (stats.subscribers, "Count"),
                "EventsDelivered": (stats.delivered - last["delivered"], "Count"),
                "LaggedSubscribers": (stats.lagged - last["lagged"], "Count"),
                "ProgressGaps": (stats.gaps - last["gaps"], "Count"),
                "InstanceQueuesRecreated": (
                    stats.instance_recreated - last["recreated"],
                    "Count",
                ),
                "DispatchToWrittenP50": (stats.written.p50_ms, "Milliseconds"),
                "DispatchToWrittenP99": (stats.written.p99_ms, "Milliseconds"),
                "LoopLagP99": (stats.loop_lag.p99_ms, "Milliseconds"),
                "LoopLagMax": (stats.loop_lag.max_ms, "Milliseconds"),
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
        Raises :class:`ChannelError` for a malformed channel, :class:`SubscriptionDeniedError`
        when ``authorize`` refuses, :class:`SubscriptionClosedError` when the hub has stopped.
        """
        _branch, upload_id = parse_channel(channel)  # a ChannelError before authorize runs
        if self.authorize is not None and not self.authorize(principal, channel):
            raise SubscriptionDeniedError(
                f"not allowed to subscribe to {channel}; the host's authorize hook refused it"
            )
        if self._pid is not None and self._pid != os.getpid():
            with self._life:
                if self._pid is not None and self._pid != os.getpid():
                    self._restart_in_child()
        refusal = self._refusal
        if refusal is not None:
            raise refusal[0](refusal[1])
        sub = self._fanout.subscribe(channel, last_event_id, buffer_size=buffer_size)
        if upload_id is not None and self.snapshot_source is not None and _unseen(sub.snapshot):
            try:
                recorded = self.snapshot_source(channel)
            except Exception:
                log.exception("snapshot source failed for %s; sending the hub's own", channel)
                recorded = None
            if recorded is not None and _unseen(sub.snapshot):
                sub.snapshots = (recorded,)
        return sub

    # -- dispatching ----------------------------------------------------------------------

    def _on_message(self, message: ReceivedMessage) -> None:
        # Whatever happens here happens again on every redelivery (parsing and fan-out are
        # pure, in memory), so a message that fails is dropped and counted, never released:
        # a released poison message would block its upload's FIFO group until it expires.
        try:
            items = packed_items(message.body)
        except EventFormatError as exc:
            self._malformed(message, str(exc))
            return
        if items is None:
            self._dispatch_one(message, lambda: ProgressEvent.from_json(message.body))
            return
        # A pack (several events of one upload, in order): each event on its own, so one
        # malformed event costs only itself.
        for item in items:
            self._dispatch_one(message, functools.partial(ProgressEvent.from_dict, item))

    def _dispatch_one(self, message: ReceivedMessage, parse: Callable[[], ProgressEvent]) -> None:
        try:
            event = parse()
            self.dispatch(event)
            self._note_end(message, event)
            self._report_gaps()
        except (EventFormatError, ChannelError) as exc:
            self._malformed(message, str(exc))
        except Exception as exc:  # a bug must not block the upload either
            log.exception("dropping progress message %s: dispatch failed", message.message_id)
            self._malformed(message, f"{type(exc).__name__} while dispatching")

    def _note_end(self, message: ReceivedMessage, event: ProgressEvent) -> None:
        """Remember whether ``event`` is the last its upload's group is expected to carry:
        ``done``, ``cancelled``, or an ``error`` after which no attempt follows."""
        group = message.group_id
        if group is None:
            return
        ended = event.type.terminal and event.extra.get("retrying") is not True
        with self._ended_lock:
            self._ended_groups.pop(group, None)
            self._ended_groups[group] = ended
            while len(self._ended_groups) > self.max_channels:
                del self._ended_groups[next(iter(self._ended_groups))]

    def _ended(self, message: ReceivedMessage) -> bool:
        """The poller's ``linger``: whether ``message``'s delete may wait for others' (up to
        ``delete_window``, ten to a call) because its upload has ended. Holding back the
        group of an ended upload delays no event; an upload still running is deleted at
        once, so its next events are not held back on the FIFO queue."""
        group = message.group_id
        if group is None:
            return False
        with self._ended_lock:
            return self._ended_groups.get(group, False)

    def _malformed(self, message: ReceivedMessage, why: str) -> None:
        # Returning normally deletes it and keeps its group moving.
        log.error("dropping malformed progress message %s: %s", message.message_id, why[:500])
        self._fanout.malformed()

    def dispatch(self, event: ProgressEvent) -> int:
        """Fold ``event`` into its channel and hand it to every matching subscriber; returns
        how many got it. The hub calls this for each message; tests and hosts that receive
        events another way may call it too. Raises :class:`EventFormatError` for an event no
        stream could carry (a channel that is not its own branch's and upload's, control
        characters, a value JSON cannot write)."""
        return self._fanout.dispatch(event)


def _unseen(status: UploadStatus) -> bool:
    """Whether a snapshot is the empty one of an upload the hub has heard nothing of."""
    return status.last_seq is None and status.state is UploadState.QUEUED
