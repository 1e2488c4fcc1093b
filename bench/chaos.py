"""AWS-shaped failures on a share of the calls of real clients, with botocore hooks.

Before the request leaves (:class:`CallFaults`, also used by the tests): throttling (400
``ThrottlingException``), a 5xx, or a dropped connection; botocore's and transflow's retries
see exactly what AWS would send. After the endpoint has done the work (``after-call``): a
lost response, the nastiest case, where the caller must retry something that already
happened (a send, a delete, a write) without doubling it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import botocore.awsrequest
import botocore.exceptions

BEFORE = ("throttle", "500", "drop")
# Operations whose response may be lost after the endpoint acted on them.
LOSSY = frozenset(
    {
        "SendMessageBatch",
        "DeleteMessageBatch",
        "ChangeMessageVisibilityBatch",
        "ReceiveMessage",
        "PutObject",
        "HeadObject",
        "ListObjectsV2",
    }
)


@attrs.define
class CallFaults:
    """Fails whole calls before they reach the endpoint: ``decide(operation, index)`` returns
    ``"throttle"``, ``"500"``, ``"drop"`` or None."""

    client: Any
    decide: Callable[[str, int], str | None]
    calls: int = 0
    injected: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self.client.meta.events.register("before-send", self._before_send)

    def _before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            index = self.calls
            self.calls += 1
        fault = self.decide(operation, index)
        if fault is None:
            return None
        with self._lock:
            self.injected += 1
        if fault == "drop":
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=request.url)
        status, code = (
            (400, "ThrottlingException") if fault == "throttle" else (500, "InternalError")
        )
        body = f'{{"__type":"{code}","message":"injected"}}'.encode()
        headers = botocore.awsrequest.HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-query-error"] = f"{code};Sender"
        return botocore.awsrequest.AWSResponse(request.url, status, headers, RawBody(body))


class RawBody:
    """A response body botocore can read from bytes: what an injected answer carries."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data


@attrs.define(eq=False)
class Chaos:
    """Fails ``rate`` of the calls of every attached client before sending (one of
    :data:`BEFORE`), and loses ``rate / 2`` of the responses of :data:`LOSSY` operations."""

    rate: float
    seed: int = 0
    enabled: bool = True
    counts: Counter[str] = attrs.field(factory=Counter)
    _rng: random.Random = attrs.field(init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - fault injection, not secrets

    def attach(self, client: Any) -> Any:
        """Inject faults into ``client``'s calls; returns the client."""
        CallFaults(client, self._before)
        client.meta.events.register("after-call", self._after)
        return client

    def _roll(self, p: float) -> float | None:
        with self._lock:
            return self._rng.random() if self.enabled and self._rng.random() < p else None

    def _before(self, operation: str, _index: int) -> str | None:
        if self._roll(self.rate) is None:
            return None
        with self._lock:
            kind = self._rng.choice(BEFORE)
            self.counts[kind] += 1
        return kind

    def _after(self, model: Any, **_: Any) -> None:
        if model.name not in LOSSY or self._roll(self.rate / 2) is None:
            return
        with self._lock:
            self.counts["lost response"] += 1
        raise botocore.exceptions.ConnectionClosedError(endpoint_url="chaos (response lost)")
