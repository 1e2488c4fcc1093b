"""Per-entry failures injected into a real client's batch calls with botocore hooks, for the
benchmarks that measure delivery under faults (the test suite has its own, in tests/).

A failed entry is removed before the request is built, so it really was not sent, and it is
reported in the response's ``Failed`` list as AWS reports a transient per-entry failure
(``InternalError``, no sender fault): the batch sender must send it again.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

_ENTRY_KEYS = ("PublishBatchRequestEntries", "Entries")


@attrs.define
class EntryFailures:
    """Fails one entry per ``every`` entries sent through ``operation`` of ``client`` (SNS
    ``PublishBatch`` or SQS ``SendMessageBatch``). ``injected`` counts them."""

    client: Any
    operation: str
    every: int
    entries: int = 0
    injected: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be at least 1, not {self.every}")
        events = self.client.meta.events
        service = self.client.meta.service_model.service_name
        events.register(f"before-parameter-build.{service}.{self.operation}", self._before)
        events.register(f"after-call.{service}.{self.operation}", self._after)

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        key = next(k for k in _ENTRY_KEYS if k in params)
        entries = params[key]
        with self._lock:
            self.entries += len(entries)
            # The failures due so far; one the last batch could not take (AWS refuses an
            # empty batch, so one entry is always kept) is taken by the next.
            owed = self.entries // self.every - self.injected
            count = max(0, min(owed, len(entries) - 1))
            self.injected += count
        if not count:
            return
        # The first entries fail: their successors go through first, the hardest order for
        # a subscriber (the retried event arrives after later events of its upload).
        failed, params[key] = entries[:count], entries[count:]
        context["bench_failed"] = [
            {"Id": e["Id"], "Code": "InternalError", "SenderFault": False, "Message": "injected"}
            for e in failed
        ]

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        failed = context.pop("bench_failed", [])
        if failed:
            parsed.setdefault("Failed", []).extend(failed)
