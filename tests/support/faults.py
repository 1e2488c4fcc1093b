"""Fault injection on real boto3 clients, with botocore event hooks: failed batch entries.

Whole calls failing (throttled, 5xx, dropped) are :class:`bench.chaos.CallFaults`, which the
soak uses too.

The calls still go to the moto server over HTTP; these hooks make some of them fail the way
AWS fails: a batch entry reported in ``Failed`` (and not delivered), a throttled or 5xx
response, a dropped connection. Nothing here imitates SQS itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs

EntryFault = tuple[str, bool]  # (code, sender fault)


@attrs.define
class EntryFaults:
    """Fails chosen entries of a batch operation: ``decide(call_index, entry)`` returns a
    fault or None. A failed entry is removed before the request is built, so it really was
    not sent, and reported in the response's ``Failed`` list."""

    client: Any
    operation: str
    decide: Callable[[int, dict[str, Any]], EntryFault | None]
    calls: int = 0
    injected: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        events = self.client.meta.events
        service = self.client.meta.service_model.service_name
        events.register(f"before-parameter-build.{service}.{self.operation}", self._before)
        events.register(f"after-call.{service}.{self.operation}", self._after)

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            index = self.calls
            self.calls += 1
        kept, dropped = [], []
        for entry in params["Entries"]:
            fault = self.decide(index, entry)
            if fault is None:
                kept.append(entry)
            else:
                dropped.append(
                    {
                        "Id": entry["Id"],
                        "Code": fault[0],
                        "SenderFault": fault[1],
                        "Message": "injected",
                    }
                )
        if not kept:  # SQS refuses an empty batch: keep the call, fail nothing this time
            return
        params["Entries"] = kept
        context["transflow_dropped"] = dropped
        with self._lock:
            self.injected += len(dropped)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        dropped = context.pop("transflow_dropped", [])
        if dropped:
            parsed.setdefault("Failed", []).extend(dropped)
