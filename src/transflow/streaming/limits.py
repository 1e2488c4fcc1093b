"""How many event streams the SSE apps hold open: at most ``max_streams`` in all and
``max_streams_per_token`` per stream token (or per owner the host names), so one token
cannot take every connection of a server. A stream over either cap is refused with a 503
and ``Retry-After``; each refusal is counted, and a burst of them is logged once.

Pure bookkeeping under one lock: no HTTP, no AWS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

import attrs

from transflow._aws.emf import emit
from transflow._wire.validators import bounded_int

__all__ = ["StreamLimitStats", "StreamLimits"]

log = logging.getLogger(__name__)

DEFAULT_MAX_STREAMS = 10_000
DEFAULT_MAX_STREAMS_PER_TOKEN = 16
DEFAULT_RETRY_AFTER = 15
_WARN_EVERY = 60.0
"""Seconds between two warnings about refusals: a client retrying in a loop must not fill
the log, and the count in between is in the next warning and in :meth:`StreamLimits.stats`."""


@attrs.frozen
class StreamLimitStats:
    """Streams open now and since start: the most open at once, and the streams refused
    because the process was full (``refused_full``) or their token or owner was
    (``refused_per_token``)."""

    open: int
    peak: int
    refused_full: int
    refused_per_token: int

    @property
    def refused(self) -> int:
        """Every stream refused by a cap."""
        return self.refused_full + self.refused_per_token


@attrs.define(eq=False)
class StreamSlot:
    """One open stream's place under the caps, given back by :meth:`release` (idempotent:
    every way a stream ends calls it)."""

    _limits: StreamLimits
    _owner: Hashable | None
    _released: bool = False

    def release(self) -> None:
        self._limits._release(self)


@attrs.define(eq=False)
class StreamLimits:
    """The caps on concurrent event streams of :func:`~transflow.streaming.apps.wsgi_app`
    and :func:`~transflow.streaming.apps.asgi_app`.

    ``max_streams`` bounds the streams open at once (10,000 by default: each holds a
    subscription and, on a WSGI server, a thread). ``max_streams_per_token`` bounds those of
    one stream token (16 by default: a user with the same upload open in several tabs, and
    the old connections a network change leaves behind until their next heartbeat, fit
    well within; HTTP/1.1 browsers open at most 6 connections per host anyway). A request
    over either cap gets a 503 with ``Retry-After: retry_after`` seconds (15 by default,
    the heartbeat: by then every stream whose client went away has written once and
    been released). Give one instance to every app of a process to share the caps; read
    :meth:`stats` for the counts. Every option is checked here: one out of range raises
    :class:`~transflow.errors.ConfigError`.
    """

    max_streams: int = attrs.field(default=DEFAULT_MAX_STREAMS, validator=bounded_int(1))
    max_streams_per_token: int = attrs.field(
        default=DEFAULT_MAX_STREAMS_PER_TOKEN, validator=bounded_int(1)
    )
    retry_after: int = attrs.field(default=DEFAULT_RETRY_AFTER, validator=bounded_int(1, 3600))

    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _open: int = attrs.field(init=False, default=0)
    _peak: int = attrs.field(init=False, default=0)
    _by_owner: dict[Hashable, int] = attrs.field(init=False, factory=dict)
    _refused_full: int = attrs.field(init=False, default=0)
    _refused_per_token: int = attrs.field(init=False, default=0)
    _warned_at: float | None = attrs.field(init=False, default=None)
    _unreported: int = attrs.field(init=False, default=0)
    _emitted: StreamLimitStats | None = attrs.field(init=False, default=None)

    def acquire(self, owner: Hashable | None) -> StreamSlot | str:
        """A slot for a new stream of ``owner`` (a token's or the host's key; None counts
        only against ``max_streams``), or the one-line reason it is refused."""
        with self._lock:
            if self._open >= self.max_streams:
                self._refused_full += 1
                reason = (
                    f"this server has {self._open} event streams open, its limit "
                    f"(max_streams={self.max_streams}); retry after {self.retry_after} s"
                )
            elif owner is not None and self._by_owner.get(owner, 0) >= self.max_streams_per_token:
                self._refused_per_token += 1
                reason = (
                    f"this token already has {self.max_streams_per_token} event streams open "
                    f"(max_streams_per_token); close one (another tab?) or retry after "
                    f"{self.retry_after} s"
                )
            else:
                self._open += 1
                self._peak = max(self._peak, self._open)
                if owner is not None:
                    self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
                return StreamSlot(self, owner)
            warn, unreported = self._due_warning()
        if warn:
            log.warning(
                "SSE: refused %d event stream(s) with 503 since the last warning: %s "
                "(StreamLimits.stats() counts them; raise the cap if these are real users)",
                unreported,
                reason,
            )
        return reason

    def _due_warning(self) -> tuple[bool, int]:
        # Under the lock: one warning per burst, with the count of the ones it stands for.
        self._unreported += 1
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < _WARN_EVERY:
            return False, self._unreported
        self._warned_at = now
        unreported, self._unreported = self._unreported, 0
        return True, unreported

    def _release(self, slot: StreamSlot) -> None:
        with self._lock:
            if slot._released:
                return
            slot._released = True
            self._open -= 1
            owner = slot._owner
            if owner is not None:
                left = self._by_owner[owner] - 1
                if left:
                    self._by_owner[owner] = left
                else:
                    # Gone with its last stream: the map holds only owners with streams open.
                    del self._by_owner[owner]

    def stats(self) -> StreamLimitStats:
        """Streams open now, the peak, and the refusals since start."""
        with self._lock:
            return StreamLimitStats(
                self._open, self._peak, self._refused_full, self._refused_per_token
            )

    def emit_metrics(self) -> StreamLimitStats:
        """Write the caps' metrics in CloudWatch EMF (:mod:`transflow._aws.emf`): streams open
        now and the streams refused since the last call, because the process was full
        (``StreamsRefusedFull``) or a token was (``StreamsRefusedPerToken``). Call it on the
        timer that calls :meth:`ProgressHub.emit_metrics
        <transflow.streaming.hub.ProgressHub.emit_metrics>`: a refusal is otherwise only a
        503 in a browser and one warning a minute; returns the stats it read."""
        with self._lock:  # one read and one mark: two callers never count a refusal twice
            stats = StreamLimitStats(
                self._open, self._peak, self._refused_full, self._refused_per_token
            )
            last, self._emitted = self._emitted, stats
        emit(
            {
                "StreamsOpen": (stats.open, "Count"),
                "StreamsRefusedFull": (
                    stats.refused_full - (last.refused_full if last else 0),
                    "Count",
                ),
                "StreamsRefusedPerToken": (
                    stats.refused_per_token - (last.refused_per_token if last else 0),
                    "Count",
                ),
            },
            {"Component": "sse"},
            properties={"peak": stats.peak},
        )
        return stats
