"""Events, subscriptions and a hub without an endpoint, for the fan-out's pure tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from transflow import ProgressEvent, Subscription

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)


def event(upload: str, seq: int | None, branch: str = "main", **fields: Any) -> ProgressEvent:
    kind = fields.pop("type", "progress")
    if kind == "progress":
        fields.setdefault("step", "transcode")
        fields.setdefault("percent", 0 if seq is None else seq % 101)
    return ProgressEvent.create(
        kind, upload_id=upload, branch=branch, timestamp=T0, seq=seq, **fields
    )


def drain(sub: Subscription) -> list[ProgressEvent]:
    out: list[ProgressEvent] = []
    while (got := sub.get(timeout=0)) is not None:
        out.append(got)
    return out


def seqs(events: list[ProgressEvent]) -> list[int | None]:
    return [e.seq for e in events]


class NoClient:
    """Stands where the SQS client goes: the hub must not call it unless started."""

    meta = None  # no client config to check

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the hub used its SQS client ({name}) without being started")
