"""File names and user ids made safe to be one segment of an S3 key.

A name that is already safe is kept as it is. A name that had to change gets a short hash of
the original appended after a ``~``, a character the cleaning itself never keeps in user ids,
so two distinct user ids can never share a folder (``a/b`` and ``a_b`` stay apart), and two
distinct file names of one upload stay apart as well.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["MAX_FILENAME_BYTES", "MAX_USER_ID_CHARS", "safe_filename", "safe_user_id"]

MAX_FILENAME_BYTES = 200
"""Longest file name kept, in UTF-8 bytes; S3 keys may hold 1,024 in all."""
MAX_USER_ID_CHARS = 64
"""Longest user-id folder name kept."""

_HASH_CHARS = 12
# Unicode categories never kept in a file name: controls, format characters (including
# bidirectional overrides that make "evil\u202egnp.exe" read as "evilexe.png"), line and
# paragraph separators, surrogates, private use and unassigned code points.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_PATH_SEPARATORS = re.compile(r"[/\\]+")
# S3 replaces ${filename} in a POST form's key, and botocore signs a key ending in it as
# ``starts-with $key``: a file name must never hold one.
_POLICY_VARIABLE = re.compile(r"\$+")
_DOTS = re.compile(r"\.{2,}")
_SPACES = re.compile(r"\s+")
_USER_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


def _digest(original: str) -> str:
    return hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]


def _cut_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def safe_filename(name: str) -> str:
    """One key segment for a file name a browser sent.

    Path separators and ``$`` (so no ``${filename}`` reaches a presigned POST) become
    ``_``; control, format and separator characters are dropped;
    runs of dots become one dot (so ``..`` never appears); whitespace runs become one space;
    the result is NFC-normalised and at most :data:`MAX_FILENAME_BYTES` UTF-8 bytes, with
    its extension kept. ``my song.mp3`` stays ``my song.mp3``; ``../../etc/passwd`` becomes
    ``._._etc_passwd~{hash}``.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    text = _PATH_SEPARATORS.sub("_", text)
    text = _POLICY_VARIABLE.sub("_", text)
    text = _DOTS.sub(".", text)
    text = _SPACES.sub(" ", text).strip()
    if text in ("", "."):
        text = "file"
    if text == name and len(text.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return text
    # Changed (or too long): keep the extension, mark with the original's hash.
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = text, ""
    suffix = f"~{_digest(name)}" + (f".{ext}" if ext else "")
    room = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
    return _cut_utf8(stem, max(room, 1)).rstrip(" .") + suffix


def safe_user_id(user_id: str) -> str:
    """The folder name of a user in ``users/{userId}/``.

    Letters, digits and ``. _ @ -`` are kept; anything else becomes ``_``, and a user id that
    had to change (or was longer than :data:`MAX_USER_ID_CHARS`) ends in ``~`` and a hash of
    the original, which keeps distinct users in distinct folders.
    """
    cleaned = _DOTS.sub(".", _USER_UNSAFE.sub("_", user_id)).strip(".")
    if cleaned == user_id and 0 < len(cleaned) <= MAX_USER_ID_CHARS:
        return cleaned
    room = MAX_USER_ID_CHARS - _HASH_CHARS - 1
    return f"{cleaned[:room] or 'user'}~{_digest(user_id)}"
