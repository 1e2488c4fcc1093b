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
import botocore.awsrequest
from bench.chaos import RawBody

EntryFault = tuple[str, bool]  # (code, sender fault)


@attrs.define
class EntryFaults:
    """Fails chosen entries of a batch operation: ``decide(call_index, entry)`` returns a
    fault or None. A failed entry is removed before the request is built, so it really was
    not sent, and reported in the response's ``Failed`` list. SQS's ``Entries`` and SNS
    PublishBatch's ``PublishBatchRequestEntries`` alike."""

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
        key = "PublishBatchRequestEntries" if "PublishBatchRequestEntries" in params else "Entries"
        kept, dropped = [], []
        for entry in params[key]:
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
        params[key] = kept
        context["transflow_dropped"] = dropped
        with self._lock:
            self.injected += len(dropped)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        dropped = context.pop("transflow_dropped", [])
        if dropped:
            parsed.setdefault("Failed", []).extend(dropped)


@attrs.define
class BatchTooLong:
    """Refuses whole batch calls the way SNS and SQS refuse one whose entries together pass
    the endpoint's limit: a ``BatchRequestTooLong`` error, nothing in it sent.
    ``refuse(entries)`` decides from the call's entries (``PublishBatchRequestEntries`` or
    ``Entries``); the others go to the endpoint unchanged."""

    client: Any
    operation: str
    refuse: Callable[[list[dict[str, Any]]], bool]
    calls: int = 0
    refused: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        events = self.client.meta.events
        service = self.client.meta.service_model.service_name
        events.register(f"before-parameter-build.{service}.{self.operation}", self._judge)
        events.register(f"before-call.{service}.{self.operation}", self._answer)

    def _judge(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        entries = params.get("PublishBatchRequestEntries", params.get("Entries", []))
        with self._lock:
            self.calls += 1
        context["transflow_too_long"] = self.refuse(entries)

    def _answer(self, context: dict[str, Any], **_: Any) -> Any:
        if not context.pop("transflow_too_long", False):
            return None
        with self._lock:
            self.refused += 1
        http = botocore.awsrequest.AWSResponse(
            "https://refused.invalid/", 400, botocore.awsrequest.HTTPHeaders(), RawBody(b"")
        )
        parsed = {
            "Error": {
                "Code": "BatchRequestTooLong",
                "Message": "injected: the batch request is too long",
                "Type": "Sender",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return http, parsed
