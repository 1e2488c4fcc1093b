"""The hub lease: one reader of a shared progress queue, or a loud refusal.

SQS gives each message to one receiver, so two hubs on one progress queue (gunicorn ``-w 4``,
``uvicorn --workers 2``) split every upload's events between them and each browser sees a
fraction, with every response a 200. :class:`QueueLease` makes the second hub notice: the
holder writes a tag on the progress queue, ``transflow:hub-lease = "{holder} {beat}"``, and
rewrites it with the next beat every third of the lease time. A hub that finds another
holder's tag stands by: it consumes nothing, its subscribers are refused (503, the reason
and the fix), and it takes the lease over only once the tag has not changed for a whole
lease time as *its own* monotonic clock measures it, so no host's wall clock matters.

Why a queue tag and not an S3 lease object: the stream role's only resource in the default
mode is the progress queue (it needs no bucket, and a deployment need not give it one),
and the hub only has an SQS client; a tag needs ``sqs:TagQueue``, ``sqs:UntagQueue`` and
``sqs:ListQueueTags`` on that one queue. What a tag lacks is a conditional write, so two
hubs starting in the same instant can both read "free", both write, and both read back
their own value (the later write wins in SQS, but each read may precede the other's
write). That race lasts until the next beat: each beat reads the tag first and the hub
whose value was overwritten steps down (stops consuming, closes its subscribers so they
reconnect). Meanwhile events may be split, and the gap detector
(:class:`~transflow.streaming.fanout.FanOut`, ``gaps`` in the hub's stats) reports it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["LEASE_TAG", "QueueLease", "new_holder_id"]

log = logging.getLogger(__name__)

LEASE_TAG = "transflow:hub-lease"
"""The progress queue tag naming the hub that reads the queue: ``"{holder} {beat}"``."""


def new_holder_id() -> str:
    """``{host}:{pid}:{random}``: which process holds the lease, readable by an operator,
    and unique even for two hubs of one process."""
    host = socket.gethostname()[:64] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_of(value: str | None) -> str | None:
    """The holder named by a lease tag's value (None for no value)."""
    if not value:
        return None
    return value.rsplit(" ", 1)[0]


@attrs.define(eq=False)
class QueueLease:
    """The lease on the progress queue at ``url`` for ``holder``, ``lease_sec`` long.

    :meth:`acquire` takes it when free, or when the value seen has not changed for
    ``lease_sec`` (a holder that died without :meth:`release`); :meth:`renew` writes the
    next beat and says whether the lease is still this holder's. Not thread-safe: one
    thread (the hub's keeper) calls it."""

    sqs: SQSClient
    url: str
    lease_sec: float = 30.0
    holder: str = attrs.field(factory=new_holder_id)
    clock: Callable[[], float] = time.monotonic
    _beat: int = attrs.field(init=False, default=0)
    # The other holder's value last read, and when (our clock) it was first read so.
    _seen: tuple[str, float] | None = attrs.field(init=False, default=None)

    @property
    def renew_every(self) -> float:
        """Seconds between beats: a third of the lease, so one slow beat never loses it."""
        return self.lease_sec / 3

    def read(self) -> str | None:
        """The tag's value now (None: nobody holds the lease)."""
        tags = self.sqs.list_queue_tags(QueueUrl=self.url).get("Tags", {})
        return tags.get(LEASE_TAG) or None

    def _write(self) -> str:
        self._beat += 1
        value = f"{self.holder} {self._beat}"
        self.sqs.tag_queue(QueueUrl=self.url, Tags={LEASE_TAG: value})
        return value

    def acquire(self) -> str | None:
        """Take the lease if it is free, ours, or expired; returns None when this holder has
        it now, else the holder that has it."""
        value = self.read()
        other = holder_of(value)
        if other is not None and other != self.holder:
            assert value is not None
            now = self.clock()
            if self._seen is None or self._seen[0] != value:
                self._seen = (value, now)  # it changed: its holder is alive
                return other
            if now - self._seen[1] < self.lease_sec:
                return other
            log.warning(
                "hub lease: %s has not renewed its lease on %s for %.0fs; taking it over",
                other,
                self.url,
                now - self._seen[1],
            )
        self._seen = None
        self._write()
        # Read back: of two hubs writing at once, the later write is the one that stays.
        winner = holder_of(self.read())
        return None if winner == self.holder else winner

    def renew(self) -> str | None:
        """Write the next beat if the lease is still ours; returns None when it is, else the
        holder that took it (then nothing is written)."""
        other = holder_of(self.read())
        if other is not None and other != self.holder:
            return other
        self._write()
        return None

    def release(self) -> None:
        """Give the lease up (if still ours), so the next hub need not wait for it."""
        if holder_of(self.read()) == self.holder:
            self.sqs.untag_queue(QueueUrl=self.url, TagKeys=[LEASE_TAG])
