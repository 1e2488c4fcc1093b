"""S3 multipart arithmetic: the limits S3 sets and the part size of a file. Pure.

Shared by :func:`transflow.create_upload` (which picks a file's part size and count) and
:mod:`transflow.ingest.multipart` (which checks a browser's requests against the same rule),
so the two can never disagree about how many parts a file may have.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "MAX_MULTIPART_OBJECT_BYTES",
    "MAX_PARTS",
    "MAX_PART_BYTES",
    "MIN_PART_BYTES",
    "max_part_count",
    "part_count",
    "part_size_for",
]

MIB = 1024**2
MIN_PART_BYTES = 5 * MIB
"""S3's smallest part (every part but the last)."""
MAX_PART_BYTES = 5 * 1024**3
"""S3's largest part."""
MAX_PARTS = 10_000
"""S3's most parts in one multipart upload."""
MAX_MULTIPART_OBJECT_BYTES = 5 * 1024**4
"""The largest object S3 holds (5 TiB)."""
DEFAULT_MULTIPART_THRESHOLD = 100 * MIB
"""Files declared larger than this go up in parts; smaller ones in one presigned POST."""
DEFAULT_PART_SIZE = 8 * MIB
"""The part size of a file small enough for it: a lost connection re-sends at most this."""


def part_size_for(size: int, preferred: int = DEFAULT_PART_SIZE) -> int:
    """The part size of a ``size``-byte file: ``preferred``, raised (to whole MiB) when the
    file would otherwise need more than :data:`MAX_PARTS` parts."""
    smallest = -(-size // MAX_PARTS)
    if smallest <= preferred:
        return preferred
    return -(-smallest // MIB) * MIB


def part_count(size: int, part_size: int) -> int:
    """How many parts a ``size``-byte file has (one, even when empty)."""
    return max(1, -(-size // part_size))


def max_part_count(max_size: int, preferred: int = DEFAULT_PART_SIZE) -> int:
    """The most parts any file of at most ``max_size`` bytes can have under
    :func:`part_size_for`: what a part number is checked against when the server keeps no
    record of the file's declared size."""
    return min(MAX_PARTS, part_count(max_size, preferred))
