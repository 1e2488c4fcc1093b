"""Snapshots from the upload's status record in S3, for uploads a hub has not seen.

A hub folds its snapshots from the events it received. A new instance, a restarted one, or
the other process a load balancer sends a reconnecting browser to has seen nothing of an
upload in flight, and would show an empty progress bar. :class:`StatusRecordSnapshots` reads
the upload's status record instead (one GetObject, through
:func:`transflow.processing.storage.read_status_record`), turns it into an
:class:`~transflow.streaming.snapshot.UploadStatus`, and caches the answer (a missing
record too) for ``ttl`` seconds, so a crowd reconnecting at once costs one request.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import botocore.exceptions

from transflow._wire.channels import parse_channel
from transflow._wire.keys import status_key
from transflow._wire.naming import is_canonical_branch
from transflow._wire.validators import at_least
from transflow.processing.status import ASSEMBLY_COMPLETED, AssemblyStatus
from transflow.processing.storage import read_status_record
from transflow.streaming.snapshot import OutputSeen, UploadState, UploadStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["StatusRecordSnapshots", "status_from_record"]

log = logging.getLogger(__name__)


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def status_from_record(channel: str, record: AssemblyStatus) -> UploadStatus:
    """The snapshot a status record stands for: processing while the job runs, completed
    (100 %, with its outputs) or error once it ended."""
    if record.error is not None:
        state = UploadState.ERROR
    elif record.ok == ASSEMBLY_COMPLETED:
        state = UploadState.COMPLETED
    else:
        state = UploadState.PROCESSING
    outputs = tuple(
        OutputSeen(result.key, result.name, result.bucket, step)
        for step, results in record.results.items()
        for result in results
    )
    return UploadStatus(
        channel,
        upload_id=record.upload_id,
        branch=record.branch,
        state=state,
        template_id=record.template_id or None,
        percent=100 if state is UploadState.COMPLETED else None,
        outputs=outputs,
        error=(record.message or record.error) if state is UploadState.ERROR else None,
        updated_at=_parse_time(record.last_updated),
    )


@attrs.define(eq=False)
class StatusRecordSnapshots:
    """``source(channel) -> UploadStatus | None``: the snapshot of an upload from its status
    record in ``bucket`` (the output bucket), cached for ``ttl`` seconds, at most
    ``max_entries`` uploads. ``key_for(branch, upload_id)`` says where the record is (by
    default ``outputs/{branch}/{uploadId}/status.json``; uploads stored under a user id need
    their own). A record that cannot be read gives None, and the hub's own snapshot."""

    s3: S3Client
    bucket: str
    ttl: float = attrs.field(default=5.0, validator=at_least(0))
    max_entries: int = attrs.field(default=10_000, validator=at_least(1))
    key_for: Callable[[str, str], str] = status_key
    clock: Callable[[], float] = time.monotonic
    reads: int = attrs.field(init=False, default=0)
    _cache: OrderedDict[str, tuple[float, UploadStatus | None]] = attrs.field(
        init=False, factory=OrderedDict
    )
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __call__(self, channel: str) -> UploadStatus | None:
        branch, upload_id = parse_channel(channel)
        # Nothing writes records under a branch that is not canonical (`Main`, `..`): no read.
        if upload_id is None or not is_canonical_branch(branch):
            return None
        now = self.clock()
        with self._lock:
            cached = self._cache.get(channel)
            if cached is not None and now - cached[0] <= self.ttl:
                self._cache.move_to_end(channel)
                return cached[1]
        status = self._read(channel, branch, upload_id)
        with self._lock:
            self._cache[channel] = (now, status)
            self._cache.move_to_end(channel)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return status

    def _read(self, channel: str, branch: str, upload_id: str) -> UploadStatus | None:
        key = self.key_for(branch, upload_id)
        with self._lock:
            self.reads += 1
        try:
            record = read_status_record(self.s3, self.bucket, key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            log.warning("snapshot: cannot read s3://%s/%s: %s", self.bucket, key, exc)
            return None
        return None if record is None else status_from_record(channel, record)
