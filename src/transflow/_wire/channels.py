"""Progress channels: ``upload:{branch}:{uploadId}`` and the branch pattern ``upload:{branch}:*``.

The only place that knows the format; everything else builds and parses channels here."""

from __future__ import annotations

from transflow.errors import ChannelError

__all__ = ["branch_channel", "channel_matches", "parse_channel", "upload_channel"]

_PREFIX = "upload"
_ANY = "*"


def upload_channel(branch: str, upload_id: str) -> str:
    """The progress channel of one upload: ``upload:{branch}:{uploadId}``."""
    return f"{_PREFIX}:{branch}:{upload_id}"


def branch_channel(branch: str) -> str:
    """The pattern that matches every upload of a branch: ``upload:{branch}:*``."""
    return f"{_PREFIX}:{branch}:{_ANY}"


def channel_matches(pattern: str, channel: str) -> bool:
    """Whether ``channel`` is ``pattern`` or falls under a branch pattern ending in ``:*``."""
    if pattern.endswith(":" + _ANY):
        return channel.startswith(pattern[:-1]) and len(channel) > len(pattern) - 1
    return pattern == channel


def parse_channel(channel: str) -> tuple[str, str | None]:
    """``(branch, uploadId)`` of ``upload:{branch}:{uploadId}``, or ``(branch, None)`` of the
    branch pattern ``upload:{branch}:*``; raises :class:`ChannelError` otherwise."""
    parts = channel.split(":", 2) if isinstance(channel, str) else []
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or not parts[2]:
        raise ChannelError(
            f"{channel!r} is not a progress channel: subscribe to upload:{{branch}}:{{uploadId}} "
            "or upload:{branch}:* (see transflow.upload_channel and branch_channel)"
        )
    return parts[1], None if parts[2] == _ANY else parts[2]
