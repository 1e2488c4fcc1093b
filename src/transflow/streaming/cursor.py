"""The event id of a branch stream: a cursor any hub instance can resume from exactly.

Each fan-out instance's queue may interleave the uploads of a branch in another (valid)
FIFO order, so "after event X in arrival order" means different things on different
instances. What every instance agrees on is the order of one upload's events (one FIFO
group, delivered to every instance queue in the order it was published). So a branch
stream's id lists, per upload, the last event the client was given: ``b1.{horizon}`` then
``.{key}{seq}`` per upload, least recently advanced first, where ``key`` is 11 characters
of base64url (a 64-bit BLAKE2b hash of the upload id: ids up to 128 characters do not make
the id long) and ``seq`` and ``horizon`` are base 36.

Bounded: at most :data:`MAX_CURSOR_UPLOADS` uploads (the fan-out's ``cursor_uploads``,
16 by default), so an id is at most ``14 + 23 * uploads`` ASCII characters (382 by default),
never a ``:`` (so it is never taken for an ``{uploadId}:{seq}``), CR, LF or NUL. When a
stream has been given events of more uploads than that, the least recently advanced upload
leaves the cursor and the ``horizon`` rises to its seq: uploads the cursor does not list are
then resumed from their events with a seq above the horizon (publishers number events from
the millisecond an attempt started, so this is "events newer than the oldest upload
forgotten"), which is no longer exact. Without a horizon (``-``), an upload the cursor does
not list is one the client has been given nothing of.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections import OrderedDict

import attrs

from transflow._wire.model import MAX_SEQ

__all__ = ["MAX_CURSOR_UPLOADS", "Cursor", "cursor_chars", "is_cursor", "upload_key"]

MAX_CURSOR_UPLOADS = 64
"""The most uploads a cursor may list (``cursor_uploads`` of a fan-out is at most this)."""

_KEY_CHARS = 11
_SEQ_CHARS = 11  # 36**11 > 2**53
_PREFIX = "b1."
_SHAPE = re.compile(
    rf"b1\.(-|[0-9a-z]{{1,{_SEQ_CHARS}}})"
    rf"((?:\.[A-Za-z0-9_-]{{{_KEY_CHARS}}}[0-9a-z]{{1,{_SEQ_CHARS}}}){{0,{MAX_CURSOR_UPLOADS}}})",
    re.ASCII,
)


def cursor_chars(uploads: int) -> int:
    """The longest id a cursor of ``uploads`` uploads can be."""
    return len(_PREFIX) + _SEQ_CHARS + uploads * (1 + _KEY_CHARS + _SEQ_CHARS)


@functools.lru_cache(maxsize=4096)  # every event a branch stream takes asks for one
def upload_key(upload_id: str) -> str:
    """The 11-character key of an upload in a cursor."""
    digest = hashlib.blake2b(upload_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


def is_cursor(value: object) -> bool:
    """Whether ``value`` has the shape of a cursor (what the SSE layer lets through)."""
    return isinstance(value, str) and _SHAPE.fullmatch(value) is not None


@attrs.define(eq=False)
class Cursor:
    """Per upload key, the seq of the last event given (least recently advanced first),
    and the horizon below which the uploads it no longer lists were given everything."""

    limit: int
    horizon: int | None = None
    seqs: OrderedDict[str, int] = attrs.field(factory=OrderedDict)

    @classmethod
    def parse(cls, value: object, limit: int) -> Cursor | None:
        """The cursor an id holds; None when it is not one (a seq past 2**53-1 included).
        A cursor listing more than ``limit`` uploads keeps the most recent ones."""
        if not isinstance(value, str) or _SHAPE.fullmatch(value) is None:
            return None
        head, *entries = value[len(_PREFIX) :].split(".")
        cursor = cls(limit, None if head == "-" else int(head, 36))
        for entry in entries:
            seq = int(entry[_KEY_CHARS:], 36)
            if seq > MAX_SEQ:
                return None
            cursor.advance(entry[:_KEY_CHARS], seq)
        if cursor.horizon is not None and cursor.horizon > MAX_SEQ:
            return None
        return cursor

    def advance(self, key: str, seq: int) -> None:
        """The client was given the event ``seq`` of the upload ``key``."""
        self.seqs[key] = seq
        self.seqs.move_to_end(key)
        while len(self.seqs) > self.limit:
            _, forgotten = self.seqs.popitem(last=False)
            self.horizon = forgotten if self.horizon is None else max(self.horizon, forgotten)

    def encode(self) -> str:
        """The id: ASCII, no ``:``, at most :func:`cursor_chars` (``limit``) characters."""
        head = "-" if self.horizon is None else _base36(self.horizon)
        return _PREFIX + head + "".join(f".{key}{_base36(seq)}" for key, seq in self.seqs.items())
