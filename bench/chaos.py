"""AWS-shaped failures on a share of the calls of real clients, with botocore hooks.

Before the request leaves (``tests.faults.CallFaults``): throttling (400
``ThrottlingException``), a 5xx, or a dropped connection; botocore's and transflow's retries
see exactly what AWS would send. After the endpoint has done the work (``after-call``): a
lost response, the nastiest case, where the caller must retry something that already
happened (a send, a delete, a write) without doubling it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import attrs
import botocore.exceptions

from tests.faults import CallFaults

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
