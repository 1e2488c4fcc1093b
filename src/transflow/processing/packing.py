"""Building packed progress messages (:mod:`transflow._wire.packs`) from a send's events,
and telling each event what happened to the message that carried it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from transflow._aws.sqs_batch import BatchResult, EntryFailure, OutgoingMessage
from transflow._wire.model import ProgressEvent
from transflow._wire.packs import pack_body

__all__ = ["Pack", "pack_messages", "per_event"]

DedupId = Callable[[str, str, int], str]
"""``dedup_id(upload_id, attempt_token, seq)``: the deduplication id of a message whose
(first) event has ``seq``."""


@attrs.frozen
class Pack:
    """One message to send and the keys of the events it carries, in order."""

    key: str
    event_keys: tuple[str, ...]
    message: OutgoingMessage


def pack_messages(
    items: Sequence[tuple[str, ProgressEvent, str]], max_bytes: int, dedup_id: DedupId
) -> list[Pack]:
    """``(key, event, attempt_token)`` in send order, as packs: one upload's events of one
    attempt together, in order, each pack at most ``max_bytes`` (an event alone always
    fits: a larger one is refused when emitted). A pack of one event is the event itself."""
    groups: dict[tuple[str, str], list[tuple[str, ProgressEvent, str]]] = {}
    for key, event, token in items:
        groups.setdefault((event.upload_id, token), []).append((key, event, event.to_json()))
    packs: list[Pack] = []
    for (upload_id, token), members in groups.items():
        run: list[tuple[str, ProgressEvent, str]] = []
        size = 2  # the brackets
        for member in members:
            grows = len(member[2].encode("utf-8", "surrogatepass")) + (1 if run else 0)
            if run and size + grows > max_bytes:
                packs.append(_pack(upload_id, token, run, dedup_id))
                run, size, grows = [], 2, grows - 1
            run.append(member)
            size += grows
        packs.append(_pack(upload_id, token, run, dedup_id))
    return packs


def _pack(
    upload_id: str, token: str, run: list[tuple[str, ProgressEvent, str]], dedup_id: DedupId
) -> Pack:
    first = run[0][1]
    body = run[0][2] if len(run) == 1 else pack_body([text for _, _, text in run])
    return Pack(
        key=run[0][0],
        event_keys=tuple(key for key, _, _ in run),
        message=OutgoingMessage(
            body, group_id=upload_id, dedup_id=dedup_id(upload_id, token, first.seq or 0)
        ),
    )


def per_event(result: BatchResult, packs: Sequence[Pack]) -> BatchResult:
    """``result`` of sending ``packs``, per event: each event shares its message's fate."""
    failures = {failure.key: failure for failure in result.failed}
    succeeded: list[str] = []
    failed: list[EntryFailure] = []
    for pack in packs:
        failure = failures.get(pack.key)
        if failure is None:
            succeeded.extend(pack.event_keys)
        else:
            failed.extend(attrs.evolve(failure, key=key) for key in pack.event_keys)
    return BatchResult(tuple(succeeded), tuple(failed), result.calls)
