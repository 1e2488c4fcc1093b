"""QueuePoller: a long-polling SQS consumer for servers and workers outside Lambda.

One receiver thread long-polls for as many messages as there is free capacity; a thread
pool runs the handler, one message group after another on FIFO queues; a keeper thread
extends the visibility of every message held (the heartbeat), deletes after success and
returns failures through visibility so the queue's redrive policy still counts them. No
message is ever re-sent.

Threads: ``receiver`` (ReceiveMessage only), ``keeper`` (ChangeMessageVisibilityBatch and
DeleteMessageBatch only) and the handler pool. Each needs its own HTTP connection, so the
client's pool must hold at least 2 of them plus whatever the handlers use of the same
client: see :func:`poller_client_config`.

Python threads cannot be killed. A handler that outlives ``handler_timeout`` is *cancelled*:
its heartbeat stops, its message goes back to the queue through visibility, its
:class:`Delivery` is marked cancelled (handlers that run long check
``current_delivery().cancelled`` or ``remaining_time()``), and its result is discarded. Its
thread stays counted against the capacity until it returns.

Longer than 500 lines on purpose: the receiver, the keeper and the handler pool share one
lock, its condition and the state it guards (lanes, counters, the stop sequence); the rules
that keep a held message from being deleted twice or released early are checkable only when
those three are read together. (Group ordering already lives in :mod:`transflow._aws.lanes`.)
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any

import attrs
from botocore.config import Config

from transflow._aws.lanes import Held, Lanes
from transflow._aws.retry import RetryPolicy, is_retryable_error
from transflow._aws.sqs_batch import change_visibility_batch, delete_batch
from transflow._wire.limits import MAX_BATCH_ENTRIES, MAX_VISIBILITY_TIMEOUT
from transflow._wire.messages import ReceivedMessage
from transflow._wire.validators import between, positive
from transflow.errors import ConfigError, JobConfinementError, JobFailedError, TransflowError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "Delivery",
    "Handler",
    "PollerStats",
    "QueuePoller",
    "backoff_visibility",
    "check_client_pool",
    "current_delivery",
    "poller_client_config",
    "release_immediately",
]

log = logging.getLogger(__name__)

Handler = Callable[[ReceivedMessage], None]
"""Handles one message: returns on success (the message is deleted), raises on failure (it
goes back to the queue through visibility)."""

RetryDelay = Callable[[ReceivedMessage], int]

# A receipt handle that no longer holds the message: it was deleted, or its visibility ran
# out and another consumer may have it. Retrying cannot help.
_LEASE_LOST = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidParameterValue",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    }
)
_MAX_RECEIVE_PAUSE = 5.0
_POLLER_CONNECTIONS = 2  # the receiver's long poll and the keeper's batch calls


def poller_client_config(concurrency: int = 10, **overrides: Any) -> Config:
    """A botocore config for the SQS client of a :class:`QueuePoller`.

    ``max_pool_connections`` is ``concurrency`` plus the poller's own two connections, so a
    heartbeat never waits for a connection behind a 20-second long poll or the handlers'
    calls; the read timeout outlasts the longest long poll; retries are botocore's
    ``standard`` mode (the poller adds its own backoff on top)."""
    settings: dict[str, Any] = {
        "max_pool_connections": concurrency + _POLLER_CONNECTIONS + 1,
        "read_timeout": 30,
        "connect_timeout": 5,
        "retries": {"mode": "standard", "max_attempts": 3},
    }
    settings.update(overrides)
    return Config(**settings)


def backoff_visibility(initial: int = 1, maximum: int = 900) -> RetryDelay:
    """Failed messages come back after ``initial * 2 ** (receives - 1)`` seconds, at most
    ``maximum``: the receive count SQS keeps makes the backoff survive restarts."""

    def delay(message: ReceivedMessage) -> int:
        exponent = min(max(message.receive_count - 1, 0), 30)
        return int(min(maximum, initial * 2**exponent))

    return delay


def release_immediately(_message: ReceivedMessage) -> int:
    """Failed messages are visible again at once (visibility 0)."""
    return 0


# -- what a handler sees --------------------------------------------------------------------


@attrs.define(eq=False)
class Delivery:
    """The message a handler is running, how long it has and whether it was cancelled.

    ``current_delivery()`` returns it inside a handler."""

    message: ReceivedMessage
    deadline: float | None = None  # time.monotonic() at which the handler times out
    cancelled: threading.Event = attrs.field(factory=threading.Event)
    lease_expires: float | None = None
    """time.monotonic() by which the message's visibility may run out: counted from before
    the call that set it (ReceiveMessage, then each heartbeat SQS confirmed), so never late.
    None: unknown (no poller keeps it)."""
    lease_margin: float = 1.0
    """Seconds of lease a worker wants left to call it held."""

    def lease_held(self) -> bool:
        """Whether the poller can still confirm that this worker holds the message: its
        last confirmed visibility has not (nearly) run out and the poller has not lost it.
        False once heartbeats kept failing (throttled, say) past the visibility timeout:
        another worker may have received the message then."""
        if self.cancelled.is_set():
            return False
        expires = self.lease_expires
        return expires is None or time.monotonic() + self.lease_margin < expires

    def remaining_time(self) -> float | None:
        """Seconds left before the handler timeout, or None without a timeout."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    @property
    def is_cancelled(self) -> bool:
        """Whether the poller gave up on this delivery (timeout, lost lease, stop)."""
        return self.cancelled.is_set()


_current: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "transflow_delivery", default=None
)


def current_delivery() -> Delivery | None:
    """The :class:`Delivery` of the handler running in this thread, if any."""
    return _current.get()


# -- observable state -----------------------------------------------------------------------


@attrs.frozen
class PollerStats:
    """Counters since start, and the current load."""

    state: str
    receive_calls: int
    receive_errors: int
    received: int
    succeeded: int
    failed: int
    timed_out: int
    released: int
    deleted: int
    delete_failures: int
    extended: int
    extend_failures: int
    leases_lost: int
    held: int
    running: int
    last_poll_at: float | None  # time.time() of the last successful ReceiveMessage
    unrun: int = 0
    """Released without their handler running: behind a failure in their FIFO group, or
    not started when the poller stopped. ``released`` counts every release, failures'
    included."""
    delete_calls: int = 0
    """DeleteMessageBatch requests made: ``deleted / delete_calls`` is how full they were
    (see ``QueuePoller.delete_window``)."""

    def __str__(self) -> str:
        # The parts add up to ``received`` (but for messages still held, or lost).
        parts = [
            f"{self.succeeded} succeeded",
            f"{self.failed} failed (released for a retry)",
            f"{self.timed_out} timed out",
            f"{self.unrun} released unrun",
        ]
        if self.running:
            parts.append(f"{self.running} still running")
        text = f"{self.received} received: {', '.join(parts)}; {self.receive_calls} receive calls"
        problems = [
            f"{count} {what}"
            for count, what in (
                (self.receive_errors, "receive errors"),
                (self.delete_failures, "delete failures"),
                (self.extend_failures, "extend failures"),
                (self.leases_lost, "leases lost"),
            )
            if count
        ]
        return text + (f"; {', '.join(problems)}" if problems else "")


@attrs.define(eq=False)
class _Counters:
    receive_calls: int = 0
    receive_errors: int = 0
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    released: int = 0
    deleted: int = 0
    delete_failures: int = 0
    delete_calls: int = 0
    extended: int = 0
    extend_failures: int = 0
    leases_lost: int = 0


def check_client_pool(sqs: object) -> None:
    """Raise :class:`ConfigError` when the SQS client's connection pool is too small for a
    poller (it checks the client's config; no call is made)."""
    config = getattr(getattr(sqs, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    if isinstance(size, int) and size < _POLLER_CONNECTIONS:
        raise ConfigError(
            f"the SQS client's max_pool_connections is {size}; a QueuePoller needs at least "
            f"{_POLLER_CONNECTIONS} so heartbeats never wait behind a long poll: build the "
            "client with config=poller_client_config(concurrency)"
        )


@attrs.define(eq=False)
class QueuePoller:
    """Long-polls ``queue_url`` and runs ``handler`` on every message.

    Start with :meth:`start` (background threads) and end with :meth:`stop`, or use it as a
    context manager, or call :meth:`run` to block until a signal asks it to stop (see
    :meth:`install_signal_handlers`).
    """

    sqs: SQSClient
    queue_url: str
    handler: Handler
    concurrency: int = attrs.field(default=10, validator=positive)
    max_in_flight: int | None = attrs.field(default=None, validator=positive)
    wait_time_seconds: int = attrs.field(default=20, validator=between(0, 20))
    visibility_timeout: int = attrs.field(
        default=30, validator=between(1, MAX_VISIBILITY_TIMEOUT, " (12 hours)")
    )
    heartbeat_interval: float | None = attrs.field(default=None, validator=positive)
    handler_timeout: float | None = attrs.field(default=None, validator=positive)
    retry_delay: RetryDelay = attrs.field(factory=backoff_visibility)
    drain_timeout: float = attrs.field(default=30.0, validator=positive)
    policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    error_backoff_max: float = attrs.field(default=20.0, validator=positive)
    name: str = "transflow-poller"
    on_receive_error: Callable[[Exception], bool] | None = None
    """Told of every failed ReceiveMessage; returns True when its owner deals with the cause
    (the hub, whose instance queue is gone), so the poller logs it without a traceback."""
    receive_pause: float = attrs.field(default=0.0, kw_only=True)
    """Seconds to wait after a receive that brought messages but not a full batch, before
    the next: messages gather meanwhile, so receives (and the deletes that follow each)
    come back fuller, at the cost of up to that much latency. 0: receive again at once. An
    empty receive has waited its long poll already and is not followed by a pause."""
    delete_window: float = attrs.field(default=0.0, kw_only=True)
    """Seconds a handled message may wait for its delete while the queue is busy, so that
    one DeleteMessageBatch carries up to ten (0: delete at once). Busy: the last receive
    came back full. Deletes go at once when it did not (on a FIFO queue a message waiting
    for its delete holds back the rest of its group, and a long poll does not wake when
    the group frees: moto's does not, and nothing says SQS's does), and sooner than the
    window when ten wait, at a stop, or a heartbeat before a waiting message's visibility
    may run out. At most a third of the visibility timeout: a handled message is always
    deleted while still invisible, so it is never delivered twice unless the delete
    itself fails."""
    linger: Callable[[ReceivedMessage], bool] | None = attrs.field(default=None, kw_only=True)
    """Asked of a handled message waiting for its delete (keep it quick: it runs under the
    poller's lock): True when no later message of its FIFO group is expected (the hub: its
    upload's last event was ``done`` or ``error``), so holding it back delays nobody. When
    every waiting message lingers, their deletes wait ``delete_window`` (or until ten wait)
    even on a thin queue and after a ``receive_pause``: the deletes of several receives go
    in one call. Whole batches of ten go as soon as they wait; the rest keeps waiting."""

    gather_deletes: bool = attrs.field(default=False, kw_only=True)
    """Let handled messages wait up to ``delete_window`` for more, busy queue or not, so
    that one DeleteMessageBatch (and one ``before_delete``) serves up to ten; up to ten
    such messages do not count against ``max_in_flight`` meanwhile (they are done: new
    work may be received, but none is taken in advance). For a queue whose groups hold one
    message each (a worker's: one job per upload), where a waiting delete holds nothing
    back."""
    before_delete: Callable[[], None] | None = attrs.field(default=None, kw_only=True)
    """Called by the keeper before each DeleteMessageBatch of handled messages, once their
    handlers have all returned: the worker sends the progress events its jobs queued
    (:meth:`~transflow.processing.progress.ProgressPublisher.flush_pending`),
    so no message is deleted before its job's last events went. If it raises, the
    messages are not deleted (logged, counted as delete failures): they come back after
    their visibility timeout."""
    scope: contextlib.AbstractContextManager[object] | None = attrs.field(
        default=None, kw_only=True
    )
    """Entered when the poller starts, left after its last delete at the stop: the worker
    combines its jobs' progress sends in it
    (:meth:`~transflow.processing.progress.ProgressPublisher.combined`)."""

    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _wake: threading.Condition = attrs.field(init=False)
    _stop_requested: threading.Event = attrs.field(init=False, factory=threading.Event)
    _stopped: threading.Event = attrs.field(init=False, factory=threading.Event)
    _keeper_done: threading.Event = attrs.field(init=False, factory=threading.Event)
    _io_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _state: str = attrs.field(init=False, default="new")
    _lanes: Lanes = attrs.field(init=False)
    _counters: _Counters = attrs.field(init=False, factory=_Counters)
    _last_poll_at: float | None = attrs.field(init=False, default=None)
    _busy: bool = attrs.field(init=False, default=False)  # the last receive came back full
    _pausing: bool = attrs.field(init=False, default=False)  # in receive_pause
    _pool: ThreadPoolExecutor | None = attrs.field(init=False, default=None)
    _threads: list[threading.Thread] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self._wake = threading.Condition(self._lock)
        self._lanes = Lanes(self.capacity, self.is_fifo)
        check_client_pool(self.sqs)
        if not 0 <= self.receive_pause <= _MAX_RECEIVE_PAUSE:
            raise ConfigError(
                f"receive_pause={self.receive_pause!r}: must be between 0 and "
                f"{_MAX_RECEIVE_PAUSE:g} seconds (it delays every message it waits for)"
            )
        if not 0 <= self.delete_window <= self.visibility_timeout / 3:
            raise ConfigError(
                f"delete_window={self.delete_window!r}: must be between 0 and a third of the "
                f"visibility timeout ({self.visibility_timeout / 3:g} s), so a handled message "
                "is deleted before it can be delivered again"
            )

    # -- configuration in effect ---------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many messages the poller holds at most (received, not yet settled)."""
        return self.max_in_flight or self.concurrency

    @property
    def heartbeat_every(self) -> float:
        """Seconds between visibility extensions: a third of the visibility timeout."""
        return self.heartbeat_interval or max(self.visibility_timeout / 3, 0.2)

    @property
    def is_fifo(self) -> bool:
        """Whether the queue is FIFO (its URL ends with ``.fifo``)."""
        return self.queue_url.endswith(".fifo")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> QueuePoller:
        """Start receiving in background threads; returns self."""
        with self._lock:
            if self._state != "new":
                raise ConfigError(f"QueuePoller already {self._state}; make a new one to restart")
            self._state = "running"
        if self.scope is not None:
            self.scope.__enter__()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.name}-job")
        for target, suffix in ((self._receive_loop, "receiver"), (self._keeper_loop, "keeper")):
            thread = threading.Thread(target=target, name=f"{self.name}-{suffix}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the poller to stop and return at once: safe in a signal handler."""
        self._stop_requested.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop gracefully and wait: stop receiving, let the long poll in flight end and
        release what it brings, release messages not started (visibility 0), wait up to
        ``drain_timeout`` for running handlers, flush deletes. Returns whether it stopped
        within ``timeout`` (default: the drain timeout plus one long poll plus a margin)."""
        self.request_stop()
        if self._state == "new":
            self._state = "stopped"
            self._stopped.set()
            return True
        limit = timeout if timeout is not None else self.drain_timeout + self.wait_time_seconds + 30
        return self._stopped.wait(limit)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the poller has stopped; returns whether it has."""
        return self._stopped.wait(timeout)

    def run(self) -> None:
        """Start, then block until :meth:`request_stop` (or a signal) and the graceful stop."""
        if self._state == "new":
            self.start()
        while not self._stopped.wait(1.0):
            pass

    def install_signal_handlers(
        self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Make SIGTERM and SIGINT request a graceful stop (call from the main thread)."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: signal %d, stopping", self.name, signum)
            self.request_stop()

        for signum in signals:
            signal.signal(signum, handle)

    def __enter__(self) -> QueuePoller:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def state(self) -> str:
        """new, running, stopping or stopped."""
        return self._state

    def stats(self) -> PollerStats:
        """A snapshot of the counters and the current load."""
        with self._lock:
            c = self._counters
            return PollerStats(
                state=self._state,
                receive_calls=c.receive_calls,
                receive_errors=c.receive_errors,
                received=c.received,
                succeeded=c.succeeded,
                failed=c.failed,
                timed_out=c.timed_out,
                released=c.released,
                deleted=c.deleted,
                delete_failures=c.delete_failures,
                delete_calls=c.delete_calls,
                extended=c.extended,
                extend_failures=c.extend_failures,
                leases_lost=c.leases_lost,
                held=len(self._lanes.held),
                running=len(self._lanes.running()),
                last_poll_at=self._last_poll_at,
                unrun=self._lanes.unrun,
            )

    # -- the receiver ---------------------------------------------------------------------

    def _receive_loop(self) -> None:
        errors = 0
        attempt_id: str | None = None
        while not self._stop_requested.is_set():
            with self._wake:
                while self._free() <= 0 and not self._stop_requested.is_set():
                    self._wake.wait(0.5)
                free = self._free()
            if self._stop_requested.is_set():
                break
            # The same attempt id after a failed receive makes SQS return the messages that
            # call may have made invisible, instead of leaving them hidden (FIFO only).
            attempt_id = attempt_id or uuid.uuid4().hex
            try:
                asked_at = time.monotonic()
                messages = self._receive(min(10, free), attempt_id)
            except Exception as exc:
                errors += 1
                with self._lock:
                    self._counters.receive_errors += 1
                # Full jitter: many workers throttled at once must not come back in step.
                window = min(self.error_backoff_max, 0.1 * 2 ** min(errors, 10))
                delay = random.uniform(0, window)  # noqa: S311 - jitter, not cryptography
                handled = self._owner_handles(exc)
                quiet = handled or is_retryable_error(exc)
                log.log(
                    logging.WARNING if quiet else logging.ERROR,
                    "%s: ReceiveMessage failed (%s); retrying in %.2fs",
                    self.name,
                    exc,
                    delay,
                    exc_info=not quiet,
                )
                self._stop_requested.wait(delay)
                continue
            errors, attempt_id = 0, None
            full = len(messages) >= min(10, free)
            pause = bool(messages) and not full and self.receive_pause > 0
            self._accept(messages, asked_at, full=full, pause=pause)
            if pause:
                self._pause()
        self._shutdown()

    def _free(self) -> int:
        """How many more messages to receive (lock held). Gathering deletes, up to ten
        handled messages waiting for theirs take no room: they are done, and new work
        meanwhile fills the next DeleteMessageBatch."""
        free = self._lanes.free()
        if self.gather_deletes:
            free += min(len(self._lanes.to_delete), MAX_BATCH_ENTRIES)
        return free

    def _pause(self) -> None:
        """Wait ``receive_pause``; the deletes of what the last receive brought wait with
        it (within ``delete_window``) and go in one call before the next receive, when no
        message they hold back can be waiting for a long poll."""
        try:
            self._stop_requested.wait(self.receive_pause)
        finally:
            with self._lock:
                self._pausing = False
        self._flush(after_pause=True)

    def _owner_handles(self, exc: Exception) -> bool:
        if self.on_receive_error is None:
            return False
        try:
            return self.on_receive_error(exc)
        except Exception:
            log.exception("%s: on_receive_error failed", self.name)
            return False

    def _receive(self, count: int, attempt_id: str) -> list[ReceivedMessage]:
        params: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": count,
            "WaitTimeSeconds": self.wait_time_seconds,
            "VisibilityTimeout": self.visibility_timeout,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self.is_fifo:
            params["ReceiveRequestAttemptId"] = attempt_id
        with self._lock:
            self._counters.receive_calls += 1
        response = self.sqs.receive_message(**params)
        with self._lock:
            self._last_poll_at = time.time()
        return [ReceivedMessage.from_sqs_message(m) for m in response.get("Messages", [])]

    def _accept(
        self, messages: list[ReceivedMessage], asked_at: float, *, full: bool, pause: bool
    ) -> None:
        lease = asked_at + self.visibility_timeout
        # A short visibility (seconds) keeps a margin it can still renew within.
        margin = min(1.0, self.visibility_timeout / 4)
        with self._lock:
            self._counters.received += len(messages)
            self._busy = full  # a thin queue wakes the keeper (below) to delete at once
            self._pausing = pause  # set before any handler runs: its delete waits too
            idle = self._lanes.accept(
                [Delivery(m, lease_expires=lease, lease_margin=margin) for m in messages],
                time.monotonic(),
                stopping=self._stop_requested.is_set(),
            )
            self._wake.notify_all()
        assert self._pool is not None
        for key in idle:
            self._pool.submit(self._run_lane, key)

    # -- running handlers -----------------------------------------------------------------

    def _run_lane(self, key: str) -> None:
        """Run one lane's messages one after another."""
        while True:
            with self._lock:
                held = self._lanes.next(key, time.monotonic(), self.handler_timeout)
            if held is None:
                return
            ok = self._call(held)
            with self._wake:
                outcome = self._lanes.finish(key, held, ok, partial(self._delay, held.message))
                if outcome == "succeeded":
                    held.settled_at = time.monotonic()
                    self._counters.succeeded += 1
                elif outcome == "failed":
                    self._counters.failed += 1
                self._wake.notify_all()

    def _call(self, held: Held) -> bool:
        token = _current.set(held.delivery)
        try:
            self.handler(held.message)
        except (JobFailedError, JobConfinementError) as exc:
            # The job processor has logged this failure (or refusal) already, once.
            log.debug("%s: message %s failed: %s", self.name, held.message.message_id, exc)
            return False
        except TransflowError as exc:
            log.warning(
                "%s: handler failed on message %s (receive %d): %s",
                self.name,
                held.message.message_id,
                held.message.receive_count,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return False
        except Exception:
            log.exception(
                "%s: handler failed on message %s (receive %d)",
                self.name,
                held.message.message_id,
                held.message.receive_count,
            )
            return False
        finally:
            _current.reset(token)
        return True

    def _delay(self, message: ReceivedMessage) -> int:
        try:
            return max(0, int(self.retry_delay(message)))
        except Exception:
            log.exception("%s: retry_delay failed; releasing at once", self.name)
            return 0

    # -- the keeper: heartbeats, deletes, releases, timeouts ---------------------------------

    def _keeper_loop(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_every
        while not self._keeper_done.is_set():
            try:
                with self._wake:
                    now = time.monotonic()
                    due = self._deletes_due_at()
                    if not (self._lanes.to_release or (due is not None and due <= now)):
                        wake_at = min(next_beat, now + 0.5, due if due is not None else now + 0.5)
                        self._wake.wait(max(0.0, wake_at - now))
                self._check_timeouts()
                self._flush()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_every
                    self._heartbeat()
            except Exception:  # the keeper must never die: log, pause, go on
                log.exception("%s: keeper error", self.name)
                self._keeper_done.wait(0.5)

    def _check_timeouts(self) -> None:
        if self.handler_timeout is None:
            return
        with self._lock:
            for held in self._lanes.overdue(time.monotonic()):
                log.error(
                    "%s: handler of message %s ran past %.1fs; cancelled, message returned",
                    self.name,
                    held.message.message_id,
                    self.handler_timeout,
                )
                self._counters.timed_out += 1
                self._lanes.abandon(held, self._delay(held.message))

    def _deletes_due_at(self) -> float | None:
        """When the waiting deletes must go (lock held): at once when ten wait, there is no
        window, the queue is not busy and the receiver not pausing, or the poller is
        stopping; else when the first has waited ``delete_window`` or a heartbeat before any
        waiting message's visibility may run out. None: none wait."""
        waiting = self._lanes.to_delete
        if not waiting:
            return None
        if len(waiting) >= MAX_BATCH_ENTRIES or not self.delete_window or self._state != "running":
            return 0.0
        if not (self.gather_deletes or self._busy or self._pausing or self._lingering()):
            return 0.0
        return self._window_due(waiting)

    def _window_due(self, waiting: Sequence[Held]) -> float:
        """When the first of ``waiting`` has waited ``delete_window``, or a heartbeat before
        any one's visibility may run out."""
        first = min(h.settled_at or 0.0 for h in waiting)
        due = first + self.delete_window
        expiries = [h.delivery.lease_expires for h in waiting if h.delivery.lease_expires]
        if expiries:
            due = min(due, min(expiries) - self.heartbeat_every)
        return due

    def _lingering(self) -> bool:
        """Whether every message waiting for its delete may linger (lock held)."""
        if self.linger is None:
            return False
        try:
            return all(self.linger(h.message) for h in self._lanes.to_delete)
        except Exception:
            log.exception("%s: linger failed; deleting at once", self.name)
            return False

    def _flush(self, *, force: bool = False, after_pause: bool = False) -> None:
        with self._io_lock:
            with self._lock:
                now = time.monotonic()
                due = self._deletes_due_at()
                lingering = self._lingering()
                send = force or (due is not None and due <= now) or (after_pause and not lingering)
                whole = False
                if send and lingering and not force and self._state == "running":
                    # Ten or more lingering: whole batches now; the rest waits on unless
                    # its own window has passed.
                    waiting = self._lanes.to_delete
                    rest = waiting[len(waiting) - len(waiting) % MAX_BATCH_ENTRIES :]
                    whole = len(waiting) >= MAX_BATCH_ENTRIES and (
                        not rest or self._window_due(rest) > now
                    )
                deletes, releases = self._lanes.take_settlements(deletes=send, whole_batches=whole)
            if deletes:
                self._delete(deletes)
            if releases:
                self._release(releases)

    def _delete(self, items: list[Held]) -> None:
        if self.before_delete is not None:
            try:
                self.before_delete()
            except Exception:
                # What must precede the deletes did not happen: the messages are left to
                # come back when their visibility runs out (their handlers are idempotent),
                # never deleted without it.
                log.exception(
                    "%s: before_delete failed; %d message(s) not deleted, delivered again "
                    "after their visibility timeout",
                    self.name,
                    len(items),
                )
                with self._wake:
                    self._lanes.deleted(items)  # forgotten: no heartbeat keeps them hidden
                    self._counters.delete_failures += len(items)
                    self._wake.notify_all()
                return
        result = delete_batch(
            self.sqs,
            self.queue_url,
            [(h.token, h.message.receipt_handle) for h in items],
            policy=self.policy,
        )
        with self._wake:
            self._lanes.deleted(items)
            self._counters.deleted += len(result.succeeded)
            self._counters.delete_failures += len(result.failed)
            self._counters.delete_calls += result.calls
            self._wake.notify_all()
        for failure in result.failed:
            # The message will be delivered again: handlers must be idempotent (ours are).
            log.error(
                "%s: could not delete %s: %s %s",
                self.name,
                failure.key,
                failure.code,
                failure.message,
            )

    def _release(self, items: list[tuple[Held, int]]) -> None:
        result = change_visibility_batch(
            self.sqs,
            self.queue_url,
            [(h.token, (h.message.receipt_handle, delay)) for h, delay in items],
            policy=self.policy,
        )
        with self._wake:
            self._lanes.released(items)
            self._counters.released += len(result.succeeded)
            self._wake.notify_all()
        for failure in result.failed:
            # Not fatal: the message becomes visible when its current visibility runs out.
            log.warning("%s: could not release %s: %s", self.name, failure.key, failure.code)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        with self._lock:
            for held in self._lanes.expiring(now):
                # 12 hours is all SQS allows: the message will be visible again soon.
                self._lose(held, "the 12-hour visibility limit")
            beating = self._lanes.extensions(now, self.visibility_timeout)
        if not beating:
            return
        items = [(h.token, (h.message.receipt_handle, seconds)) for h, seconds in beating]
        with self._io_lock:
            sent_at = time.monotonic()
            result = change_visibility_batch(self.sqs, self.queue_url, items, policy=self.policy)
        by_token = {h.token: h for h, _seconds in beating}
        extended = dict(beating)
        with self._wake:
            for token in result.succeeded:
                held = by_token[token]
                held.delivery.lease_expires = sent_at + extended[held]
            self._counters.extended += len(result.succeeded)
            self._counters.extend_failures += len(result.failed)
            for failure in result.failed:
                held = by_token[failure.key]
                if failure.code in _LEASE_LOST and held.heartbeat:
                    self._lose(held, f"{failure.code}: {failure.message}")
            self._wake.notify_all()

    def _lose(self, held: Held, why: str) -> None:
        """The poller no longer owns ``held``'s message (lock held)."""
        log.warning("%s: lost message %s (%s)", self.name, held.message.message_id, why)
        self._counters.leases_lost += 1
        self._lanes.lose(held)

    # -- graceful stop --------------------------------------------------------------------

    def _shutdown(self) -> None:
        with self._wake:
            self._state = "stopping"
            self._lanes.release_pending()
            self._wake.notify_all()
        self._flush(force=True)
        deadline = time.monotonic() + self.drain_timeout
        with self._wake:
            while any(h.state == "running" for h in self._lanes.held.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(left, 0.5))
            for held in self._lanes.cancel_running():
                log.error(
                    "%s: handler of %s still running at stop; cancelled, its message returns "
                    "when its visibility runs out",
                    self.name,
                    held.message.message_id,
                )
        self._flush(force=True)
        self._keeper_done.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._flush(force=True)  # anything the keeper picked up last
        if self.scope is not None:
            try:
                self.scope.__exit__(None, None, None)
            except Exception:
                log.exception("%s: leaving its scope failed", self.name)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        with self._lock:
            self._state = "stopped"
        self._stopped.set()
        log.info("%s: stopped (%s)", self.name, self.stats())
