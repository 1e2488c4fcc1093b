"""Packed progress messages: several events of one upload in one queue message.

A pack is a JSON array of progress events, each the object an unpacked message carries, of
one upload and one delivery attempt, in ``seq`` order. Its MessageDeduplicationId is its
first event's (each event is sent in exactly one message, so no two packs share a first
event), its MessageGroupId the upload's. A message of one event is never packed: its body
stays the event itself, which every hub reads.

Why: SQS bills per request, and a message travels three (send, receive, delete). An
upload's six events in one message cost one tenth of each instead of six tenths. Only a
hub that reads packs (this version on) may consume a queue a packing processor sends to.
"""

from __future__ import annotations

from collections.abc import Sequence

from transflow._wire.jsontext import JsonTextError, parse_json
from transflow.errors import EventFormatError

__all__ = ["pack_body", "packed_items"]


def pack_body(event_texts: Sequence[str]) -> str:
    """The body of a pack of events, given their wire JSON (two or more, of one upload, in
    order)."""
    return "[" + ",".join(event_texts) + "]"


def packed_items(body: str) -> list[object] | None:
    """The events of a pack, still undecoded (each is checked on its own, so one malformed
    event does not cost the others), or None for a body that is not a pack. Raises
    :class:`~transflow.errors.EventFormatError` for a pack that is not a JSON array."""
    if not body.lstrip().startswith("["):
        return None
    try:
        items = parse_json(body)
    except JsonTextError as exc:
        raise EventFormatError("progress event pack", [str(exc)]) from exc
    if not isinstance(items, list) or len(items) < 2:
        # A publisher never packs one event: a one-event array is forged or broken.
        raise EventFormatError(
            "progress event pack",
            ["expected a JSON array of two or more events (one event is sent as itself)"],
        )
    # Those without one fail alone, each event being checked on its own.
    uploads = {
        upload
        for item in items
        if isinstance(item, dict) and isinstance(upload := item.get("uploadId"), str)
    }
    if len(uploads) > 1:
        raise EventFormatError(
            "progress event pack", ["its events are of more than one upload; a pack is one's"]
        )
    return items
