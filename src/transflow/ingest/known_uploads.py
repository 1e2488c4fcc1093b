"""The upload metadata a warm bridge has already read, by upload folder.

``create_upload`` signs every file of an upload with the same ``x-amz-meta-*`` fields (the
POST policy pins them), so one file's HeadObject tells the metadata of its whole folder.
The bridge keeps what it read for the uploads whose files it is still waiting for, so the
second and later files of an upload cost it one ListObjectsV2 instead of a HeadObject and a
ListObjectsV2. An upload is forgotten once its job is emitted, so an upload id a host
reuses afterwards (``create_upload(upload_id=...)``) is read afresh. Only the metadata is
remembered: whether an object exists and which content
it holds always comes from S3 (the listing), never from the notification or this memory.

Bounded (least recently used forgotten), thread-safe (a bridge may handle events from
several threads). Pure: no AWS.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import attrs

from transflow._wire.dunders import fields_repr
from transflow.ingest.metadata import UploadMetadata

__all__ = ["KnownUploads", "upload_folder"]


def upload_folder(key: str) -> str | None:
    """The folder a key sits in, with its trailing slash (``uploads/main/u1/``), or None for
    a key without one."""
    folder, slash, _name = key.rpartition("/")
    return folder + slash if slash and folder else None


@attrs.define(eq=False)
class KnownUploads:
    """Metadata of upload folders, keyed by ``(bucket, folder)``; at most ``size`` kept."""

    __repr__ = fields_repr

    size: int = 4096
    _items: OrderedDict[tuple[str, str], UploadMetadata] = attrs.field(
        init=False, factory=OrderedDict
    )
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def get(self, bucket: str, folder: str) -> UploadMetadata | None:
        """The folder's metadata when known (and mark it recently used)."""
        with self._lock:
            found = self._items.get((bucket, folder))
            if found is not None:
                self._items.move_to_end((bucket, folder))
            return found

    def remember(self, bucket: str, folder: str, metadata: UploadMetadata) -> None:
        """Keep ``metadata`` for the folder, forgetting the least recently used beyond
        ``size``."""
        if self.size <= 0:
            return
        with self._lock:
            self._items[bucket, folder] = metadata
            self._items.move_to_end((bucket, folder))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, bucket: str, folder: str) -> None:
        """Drop the folder's metadata (its upload's job was emitted)."""
        with self._lock:
            self._items.pop((bucket, folder), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
