"""Holding a browser's part uploads inside the embedded endpoint, to interrupt an upload at a
chosen point: moto's server runs in the test's process (``LocalAws``), so a test can keep
chosen S3 UploadPart requests waiting after their bytes arrived, and, once released, fail
them as a connection dropped mid-request would (the part is not stored). Nothing here
imitates S3: every other request, and every later send of the same part, is moto's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from moto.s3.models import S3Backend

HOLD_LIMIT_SEC = 60.0


class DroppedPartError(ConnectionAbortedError):
    """A held part, failed on release: S3 never stored it."""


@attrs.define
class PartGate:
    """Parts ``parts`` are held the first time they arrive, until :meth:`release`."""

    parts: frozenset[int]
    released: threading.Event = attrs.field(factory=threading.Event)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _waiting: set[int] = attrs.field(factory=set)
    _held: set[int] = attrs.field(factory=set)

    def held(self) -> frozenset[int]:
        """The parts waiting now."""
        with self._lock:
            return frozenset(self._waiting)

    def dropped(self) -> frozenset[int]:
        """The parts that were held and failed after their release."""
        with self._lock:
            return frozenset(self._held - self._waiting)

    def release(self) -> None:
        self.released.set()

    def hold(self, part: int) -> None:
        with self._lock:
            self._waiting.add(part)
            self._held.add(part)
        try:
            self.released.wait(HOLD_LIMIT_SEC)
        finally:
            with self._lock:
                self._waiting.discard(part)
        raise DroppedPartError(f"part {part} held by the test, then dropped")


@contextmanager
def held_parts(*parts: int) -> Iterator[PartGate]:
    """Hold UploadPart requests for ``parts`` (first arrival only) while the block runs."""
    gate = PartGate(frozenset(parts))
    original = S3Backend.upload_part

    def upload_part(
        self: S3Backend, bucket_name: str, multipart_id: str, part_id: int, value: bytes
    ) -> Any:
        if part_id in gate.parts and not gate.released.is_set():
            gate.hold(part_id)
        return original(self, bucket_name, multipart_id, part_id, value)

    S3Backend.upload_part = upload_part  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        gate.release()
        S3Backend.upload_part = original  # type: ignore[method-assign]
