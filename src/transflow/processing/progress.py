"""Progress events to the progress queue: ordered, deduplicated, batched.

:class:`ProgressPublisher` is made once per process; each job opens a
:class:`ProgressStream` with :meth:`ProgressPublisher.stream`. A stream numbers the job's
events (``seq``), buffers them, and sends them with SendMessageBatch when a step starts, when
the job ends (``done``/``error``), when ten are waiting, or after ``flush_after`` seconds,
whichever comes first. So a job costs a fraction of one request per event, and a progress bar
never waits longer than the delay.

Deduplication. Every event's MessageDeduplicationId is ``{uploadId}:{attempt}:{seq}``: a send
retried after a timeout is dropped by the FIFO queue (same id), while a re-run of the job after
a failed delivery (another attempt) is not. ``seq`` keeps increasing across attempts, a
redrive from the dead-letter queue included: an attempt numbers its events from the
millisecond it started (:func:`first_seq`), so ``{uploadId}:{seq}`` identifies an event for
the browser too.

Fan-out mode. With a :class:`~transflow.processing.destination.ProgressTopic` (and an SNS
client) the events go to the SNS FIFO progress topic instead, with PublishBatch: batches of
at most ten and SNS's 256 KiB in total, MessageGroupId = upload id, the same deduplication
ids; SNS delivers each to every hub instance's own queue
(:mod:`transflow.streaming.instances`), so any number of stream processes see every event.

Size. An event over the destination's limit for one message is refused when it is emitted,
with :class:`~transflow.errors.ProgressEventTooLargeError`: the job's code learns it at
once, and the events around it still go.

Progress is best effort by design: a send that still fails after the retries is logged at
ERROR and the job goes on, because processing correctness comes before progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from transflow._aws.retry import RetryPolicy
from transflow._aws.s3 import error_code
from transflow._aws.sqs_batch import (
    BatchResult,
    EntryFailure,
    OutgoingMessage,
    message_size,
    send_batch,
)
from transflow._aws.tracing import span
from transflow._wire import validators
from transflow._wire.dunders import fields_repr
from transflow._wire.limits import MAX_BATCH_ENTRIES
from transflow._wire.model import ProgressEvent, ProgressType
from transflow._wire.trace import TraceContext
from transflow.errors import ConfigError, ProgressEventTooLargeError
from transflow.processing.destination import ProgressDestination, ProgressTopic

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "SEQS_PER_MS",
    "ProgressPublisher",
    "ProgressStream",
    "first_seq",
    "progress_dedup_id",
    "should_flush",
]

log = logging.getLogger(__name__)

SEQS_PER_MS = 1_000
"""An attempt numbers its events from the millisecond it started times this: room for 1,000
events per millisecond between the starts of two attempts (never close in practice: a retry
waits for its message's visibility)."""

_MAX_DEDUP = 128
# Sending at these events (after buffering them) keeps the browser's view in step with the job.
_FLUSH_TYPES = frozenset({ProgressType.STEP_START, ProgressType.DONE, ProgressType.ERROR})


# -- decisions ----------------------------------------------------------------------------


def first_seq(started_at: float) -> int:
    """The seq of the first event of an attempt that started at ``started_at`` (epoch
    seconds).

    Time, not the receive count: a job redriven from the dead-letter queue starts again at
    receive count 1, and its events must still sort after the failed attempts' (the hub
    drops an event whose seq it has passed) and must not share their deduplication ids. A
    millisecond clock stays below 2**53, so JavaScript reads it exactly."""
    return int(started_at * 1000) * SEQS_PER_MS


def progress_dedup_id(upload_id: str, attempt: str, seq: int) -> str:
    """The MessageDeduplicationId of a progress event: ``{uploadId}:{attempt}:{seq}``,
    hashed when it would pass SQS's 128 characters."""
    plain = f"{upload_id}:{attempt}:{seq}"
    if len(plain) <= _MAX_DEDUP:
        return plain
    return hashlib.sha256(plain.encode()).hexdigest()


def should_flush(event_type: ProgressType, buffered: int) -> bool:
    """Whether to send now: a step starts, the job ends, or a full batch is waiting."""
    return event_type in _FLUSH_TYPES or buffered >= MAX_BATCH_ENTRIES


def _event_key(event: ProgressEvent, index: int) -> str:
    return event.event_id or str(index)


# -- I/O ----------------------------------------------------------------------------------


@attrs.define(eq=False)  # a service with its own lock and timer: two are never the same publisher
class ProgressPublisher:
    """Sends the progress events of jobs where ``destination`` says progress goes: a
    :class:`~transflow.processing.destination.ProgressQueue` (give ``sqs``) or, in fan-out
    mode, a :class:`~transflow.processing.destination.ProgressTopic` (give ``sns``), each
    with its own limits.

    Thread-safe and cheap to share: one per process, one :class:`ProgressStream` per job.
    """

    __repr__ = fields_repr

    destination: ProgressDestination = attrs.field(
        validator=validators.instance_of(ProgressDestination)
    )
    sqs: SQSClient | None = attrs.field(default=None, kw_only=True)
    sns: SNSClient | None = attrs.field(default=None, kw_only=True)
    flush_after: float = attrs.field(default=0.5, kw_only=True, validator=validators.seconds())
    policy: RetryPolicy = attrs.field(
        factory=RetryPolicy, kw_only=True, validator=validators.instance_of(RetryPolicy)
    )
    clock: Callable[[], float] = attrs.field(
        default=time.time, kw_only=True, validator=validators.callable_
    )
    pack_events: bool = attrs.field(default=True, kw_only=True)
    """Send the events of one upload in one send as one message (a pack,
    :mod:`transflow._wire.packs`) rather than one message each (the default): fewer
    messages to send, receive and delete, and a call never carries two messages of one
    upload, so none overtakes another. ``False`` sends one message per event, for a
    consumer of the queue that reads one event per message; a consumer of its own reads
    both with :meth:`ProgressEvent.all_from_json`."""

    _pending: list[tuple[ProgressEvent, ProgressStream]] | None = attrs.field(
        default=None, init=False, repr=False
    )
    _pending_lock: threading.RLock = attrs.field(factory=threading.RLock, init=False, repr=False)
    _pending_timer: threading.Timer | None = attrs.field(default=None, init=False, repr=False)
    _combining: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.destination, ProgressTopic):
            if self.sns is None:
                raise ConfigError(
                    "ProgressPublisher: the progress topic needs sns= (an SNS client) to "
                    f"publish to {self.destination.arn}"
                )
        elif self.sqs is None:
            raise ConfigError(
                "ProgressPublisher: the progress queue needs sqs= (an SQS client) to send to "
                f"{self.destination.address}"
            )

    def stream(
        self,
        upload_id: str,
        branch: str,
        *,
        attempt: int = 1,
        attempt_token: str | None = None,
        next_seq: int | None = None,
    ) -> ProgressStream:
        """A stream for one delivery attempt of one upload's job.

        ``attempt`` is the message's ApproximateReceiveCount; ``attempt_token`` (defaults to
        ``str(attempt)``) goes into the deduplication ids and must differ between attempts.
        ``next_seq`` numbers the events from there instead of from now (:func:`first_seq`):
        with an earlier attempt's token, to send one of its events again under the same
        identity (a redelivered job's ``done``), which the queue and the hub deduplicate."""
        return ProgressStream(
            publisher=self,
            upload_id=upload_id,
            branch=branch,
            attempt_token=attempt_token or str(attempt),
            next_seq=first_seq(self.clock()) if next_seq is None else next_seq,
        )

    @contextlib.contextmanager
    def combined(self) -> Iterator[None]:
        """Inside the block, the streams' flushes join one queue across all their jobs:
        whole batches of ten are sent as soon as they wait, the rest ``flush_after``
        seconds after the first of them (the latency budget: no event waits longer) or
        when the block ends. So a Lambda batch of short jobs makes one SendMessageBatch
        (or PublishBatch) per ten events of any uploads, instead of one or two per job;
        each upload's events keep their order (one queue, sent in order).

        The block must end before the batch's messages are deleted: a job's message is
        deleted (by Lambda, after the handler returns) only after its events were sent."""
        # Blocks may overlap (concurrent handler calls on one processor, a worker's
        # threads): they share one queue, and the last to end stops combining. Resetting
        # the queue on entry would drop the events another block had queued.
        with self._pending_lock:
            if self._pending is None:
                self._pending = []
            self._combining += 1
        try:
            yield
        finally:
            with self._pending_lock:
                self._send_pending()  # this block's events are sent before it returns
                self._combining -= 1
                if self._combining == 0:
                    self._pending = None

    def flush_pending(self) -> None:
        """Send every event the combined queue holds now, and return when they were sent
        (or failed for good, logged). A worker calls it before deleting messages: each
        deleted message's job has queued its last events by then."""
        with self._pending_lock:
            self._send_pending()

    def _join(self, events: list[ProgressEvent], stream: ProgressStream) -> bool:
        """Queue a stream's events for the combined send; False outside :meth:`combined`."""
        with self._pending_lock:
            if self._pending is None:
                return False
            self._pending.extend((event, stream) for event in events)
            if self.pack_events:
                # A message per upload (and attempt): ten of them fill a call.
                if len({id(s) for _, s in self._pending}) >= MAX_BATCH_ENTRIES:
                    self._send_pending()
            elif len(self._pending) >= MAX_BATCH_ENTRIES:
                # Only whole batches go now: twelve waiting are one call of ten and two
                # left for the next events, the timer or the block's end, not two calls.
                self._send_pending(whole_batches=True)
            if self._pending and self._pending_timer is None:
                self._pending_timer = threading.Timer(self.flush_after, self._send_due)
                self._pending_timer.daemon = True
                self._pending_timer.start()
            return True

    def _send_due(self) -> None:
        with self._pending_lock:
            self._send_pending()

    def _send_pending(self, *, whole_batches: bool = False) -> None:
        # Called with the lock held: sends stay in order, one at a time.
        queued = self._pending or []
        cut = len(queued) - len(queued) % MAX_BATCH_ENTRIES if whole_batches else len(queued)
        pending = queued[:cut]
        if self._pending is not None:
            self._pending = queued[cut:]
        # Events left waiting keep the running timer: it started with the oldest of them,
        # so none waits longer than flush_after.
        if not self._pending and self._pending_timer is not None:
            self._pending_timer.cancel()
            self._pending_timer = None
        if not pending:
            return
        streams = list({id(stream): stream for _, stream in pending}.values())
        traces = [stream.trace for stream in streams if stream.trace is not None]
        # One send for many jobs: a span under the first job's trace, linked to the others'.
        with span(
            "transflow.publish",
            parent=traces[0] if traces else None,
            kind="PRODUCER",
            links=traces[1:],
            attributes={"transflow.jobs": len(streams), "transflow.events": len(pending)},
        ) as sent:
            result = self.send(
                [event for event, _ in pending], [stream.attempt_token for _, stream in pending]
            )
            if result.failed:
                sent.end(f"{len(result.failed)} event(s) not delivered")
        failed = {f.key for f in result.failed}
        for index, (event, stream) in enumerate(pending):
            if _event_key(event, index) in failed:
                stream.failed += 1
            else:
                stream.sent += 1
        for stream in streams:
            stream.calls += result.calls

    def publish(self, messages: Sequence[tuple[str, OutgoingMessage]]) -> BatchResult:
        """Send ready-made ``(key, message)`` pairs to the destination, in order and batched
        within its limits, with their own group and deduplication ids. A message over the
        destination's limit fails alone (``MessageTooLarge``). Unlike :meth:`send`, a client
        error is raised: for callers whose events are the last word on an upload
        (:func:`transflow.ops.announce.announce`, the recovery sweep) and who report what was not
        sent."""
        where = self.destination
        if isinstance(where, ProgressTopic):
            assert self.sns is not None  # checked when made
            # Fan-out mode only: a processor publishing to a queue never loads it.
            from transflow._aws.sns_batch import publish_batch  # noqa: PLC0415

            return publish_batch(
                self.sns,
                where.arn,
                messages,
                max_bytes=where.max_message_bytes,
                max_batch_bytes=where.max_batch_bytes,
                policy=self.policy,
                group_order=self.pack_events,
            )
        assert self.sqs is not None
        return send_batch(
            self.sqs,
            where.address,
            messages,
            max_bytes=where.max_message_bytes,
            policy=self.policy,
            # Packed, an upload's events of one send are one message: strict group order
            # costs no call. Unpacked, one call per event of an upload would; the hub keeps
            # a terminal event behind one that was sent again instead (FanOut.terminal_hold).
            group_order=self.pack_events,
        )

    def send(self, events: list[ProgressEvent], attempt_token: str | Sequence[str]) -> BatchResult:
        """Send events now (in order, batched; of one attempt, or with one attempt token
        per event); failures are logged and returned, never raised."""
        tokens = [attempt_token] * len(events) if isinstance(attempt_token, str) else attempt_token
        if self.pack_events:
            return self._send_packed(events, tokens)
        messages = [
            (
                _event_key(event, index),
                OutgoingMessage(
                    event.to_json(),
                    group_id=event.upload_id,
                    dedup_id=progress_dedup_id(event.upload_id, token, event.seq or 0),
                ),
            )
            for index, (event, token) in enumerate(zip(events, tokens, strict=True))
        ]
        try:
            result = self.publish(messages)
        except Exception as exc:
            log.exception(
                "progress: could not send %d events to %s; the job goes on without them",
                len(events),
                self.destination.address,
            )
            return BatchResult(
                failed=tuple(
                    EntryFailure(key, error_code(exc), str(exc), True) for key, _ in messages
                )
            )
        if result.failed:
            log.error(
                "progress: %d of %d events were not sent to %s (%s); the job goes on without them",
                len(result.failed),
                len(events),
                self.destination.address,
                ", ".join(f"{f.key}: {f.code}" for f in result.failed[:5]),
            )
        return result

    def _send_packed(self, events: list[ProgressEvent], tokens: Sequence[str]) -> BatchResult:
        # Opt-in: a processor that does not pack never loads it (cold start).
        from transflow.processing.packing import pack_messages, per_event  # noqa: PLC0415

        packs = pack_messages(
            [(_event_key(e, i), e, t) for i, (e, t) in enumerate(zip(events, tokens, strict=True))],
            self.destination.max_message_bytes,
            progress_dedup_id,
        )
        try:
            sent = self.publish([(pack.key, pack.message) for pack in packs])
        except Exception as exc:
            log.exception(
                "progress: could not send %d events to %s; the job goes on without them",
                len(events),
                self.destination.address,
            )
            failed = tuple(EntryFailure(p.key, error_code(exc), str(exc), True) for p in packs)
            return per_event(BatchResult(failed=failed), packs)
        result = per_event(sent, packs)
        if result.failed:
            log.error(
                "progress: %d of %d events were not sent to %s (%s); the job goes on without them",
                len(result.failed),
                len(events),
                self.destination.address,
                ", ".join(f"{f.key}: {f.code}" for f in result.failed[:5]),
            )
        return result

    def too_large(self, event: ProgressEvent) -> str | None:
        """Why ``event`` is over the destination's limit for one message, or None. No claim
        check carries progress events, so such an event is refused when it is emitted
        (:class:`~transflow.errors.ProgressEventTooLargeError`) rather than by the service
        after the job went on."""
        size = message_size(OutgoingMessage(event.to_json()))
        limit = self.destination.max_message_bytes
        if size <= limit:
            return None
        return (
            f"progress event {event.type.value!r} of upload {event.upload_id} is {size} bytes, "
            f"over the {limit}-byte limit of {self.destination.address}: keep large data in "
            "S3 (the job's outputs) and put its key in the event"
        )


@attrs.define(eq=False)
class ProgressStream:
    """The events of one attempt at one upload's job, in order, with their ``seq``.

    Use as a context manager (or call :meth:`close`): closing sends what is buffered.
    ``sent``, ``failed`` and ``refused`` count the events delivered, not delivered after the
    retries (each logged), and refused at :meth:`emit` for their size.
    """

    __repr__ = fields_repr

    publisher: ProgressPublisher
    upload_id: str
    branch: str
    attempt_token: str
    next_seq: int
    sent: int = 0
    calls: int = 0
    failed: int = 0
    refused: int = 0
    _buffer: list[ProgressEvent] = attrs.field(factory=list, alias="_buffer")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, alias="_lock")
    _send_lock: threading.Lock = attrs.field(factory=threading.Lock, alias="_send_lock")
    _timer: threading.Timer | None = attrs.field(default=None, alias="_timer")
    _closed: bool = attrs.field(default=False, alias="_closed")
    trace: TraceContext | None = None
    """The trace context of the job or step now running: each event carries it, and each
    send is a span under it."""

    def reserve_seq(self) -> int:
        """The seq the next event will carry, for a caller that must record it before
        emitting that event (the processor keeps its ``done`` event's seq in the completion
        record, written before the event is sent); emit it with ``emit(..., seq=reserved)``.
        Nothing is skipped when that event never comes (an ``error`` instead): the next
        event takes the seq, so the hub sees no hole."""
        with self._lock:
            return self.next_seq

    def emit(
        self, type: ProgressType | str, *, seq: int | None = None, **fields: Any
    ) -> ProgressEvent:
        """Number and buffer an event; sends at once when :func:`should_flush` says so.
        ``seq``: the one :meth:`reserve_seq` gave, for the event it was reserved for.

        Raises :class:`~transflow.errors.ProgressEventTooLargeError` (and numbers nothing)
        for an event over the destination's limit for one message."""
        kind = ProgressType(type)
        extra: Mapping[str, Any] = fields.pop("extra", None) or {}
        if self.trace is not None:
            fields.setdefault("traceparent", self.trace.traceparent)
        with self._lock:
            if seq is not None and seq != self.next_seq:
                # Another event took it (emitted from another thread in between): two
                # events with one seq would make the hub drop the second, so this one
                # takes the next. Its record then names another event: logged.
                log.error(
                    "progress: upload %s: the reserved seq %d was taken by another event; "
                    "this %s event is numbered %d",
                    self.upload_id,
                    seq,
                    kind.value,
                    self.next_seq,
                )
            event = ProgressEvent.create(
                kind,
                upload_id=self.upload_id,
                branch=self.branch,
                seq=self.next_seq,
                extra=dict(extra),
                **fields,
            )
            problem = self.publisher.too_large(event)
            if problem is not None:
                self.refused += 1
                log.error("progress: refused: %s", problem)
                raise ProgressEventTooLargeError(problem)
            self.next_seq += 1
            self._buffer.append(event)
            flush_now = should_flush(kind, len(self._buffer))
            if not flush_now and self._timer is None and not self._closed:
                # The first event of a quiet stretch starts the clock; the timer sends it.
                self._timer = threading.Timer(self.publisher.flush_after, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if flush_now:
            self.flush()
        return event

    def flush(self) -> None:
        """Send every buffered event now, in order."""
        # One sender at a time, and the buffer taken inside, so events never overtake.
        with self._send_lock:
            with self._lock:
                events, self._buffer = self._buffer, []
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            if not events or self.publisher._join(events, self):
                return
            with span(
                "transflow.publish",
                parent=self.trace,
                kind="PRODUCER",
                attributes={"transflow.upload_id": self.upload_id, "transflow.events": len(events)},
            ) as sent:
                result = self.publisher.send(events, self.attempt_token)
                if result.failed:
                    sent.end(f"{len(result.failed)} event(s) not delivered")
            self.sent += len(result.succeeded)
            self.failed += len(result.failed)
            self.calls += result.calls

    def close(self) -> None:
        """Send what is left; later events are still accepted and sent by the next flush."""
        self.flush()
        with self._lock:
            self._closed = True

    def __enter__(self) -> ProgressStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
