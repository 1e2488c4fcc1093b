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
import botocore.awsrequest

_ENTRY_KEYS = ("PublishBatchRequestEntries", "Entries")


@attrs.define
class EntryFailures:
    """Fails every ``every``-th entry sent through ``operation`` of ``client`` (SNS
    ``PublishBatch`` or SQS ``SendMessageBatch``), a batch of one included (that call is
    answered without being sent). ``entries`` counts the entries given to the client, sent
    again ones included; ``injected`` the failures."""

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
        events.register(f"before-call.{service}.{self.operation}", self._answer_if_none_left)
        events.register(f"after-call.{service}.{self.operation}", self._after)

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        key = next(k for k in _ENTRY_KEYS if k in params)
        entries = params[key]
        with self._lock:
            first = self.entries
            self.entries += len(entries)
            failing = [i for i in range(len(entries)) if (first + i + 1) % self.every == 0]
            self.injected += len(failing)
        if not failing:
            return
        context["bench_failed"] = [
            {
                "Id": entries[i]["Id"],
                "Code": "InternalError",
                "SenderFault": False,
                "Message": "injected",
            }
            for i in failing
        ]
        kept = [e for i, e in enumerate(entries) if i not in failing]
        if kept:
            params[key] = kept
        else:
            # AWS refuses an empty batch: the call is answered here instead, unsent.
            context["bench_none_left"] = True

    def _answer_if_none_left(self, context: dict[str, Any], **_: Any) -> Any:
        if not context.pop("bench_none_left", False):
            return None
        http = botocore.awsrequest.AWSResponse("", 200, botocore.awsrequest.HTTPHeaders(), None)
        return http, {"Successful": [], "Failed": []}

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        failed = context.pop("bench_failed", [])
        if failed:
            parsed.setdefault("Failed", []).extend(failed)
