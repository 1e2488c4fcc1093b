"""Counting the AWS requests a block of code makes, with botocore's event hooks.

SQS bills per request, so transflow measures cost in requests, not only in seconds. A
:class:`RequestCounter` attaches to any number of boto3 clients and counts each API call once
(``before-call``), and each HTTP attempt, retries included (``before-send``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import attrs

__all__ = ["RequestCounter", "count_requests"]


class _HasEvents(Protocol):
    @property
    def meta(self) -> Any: ...


@attrs.define
class RequestCounter:
    """Counts API calls per ``(service, operation)`` on the clients it is attached to.

    ``calls`` counts what the code asked for; ``attempts`` counts what went over the wire,
    retries included. ``empty_receives`` counts the SQS ReceiveMessage calls that came back
    empty: idle long polls, whose number follows wall time rather than the work
    (:meth:`busy_total` leaves them out). Thread-safe: the processor and poller call from
    worker threads.
    """

    calls: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    attempts: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    empty_receives: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)
    _attached: list[tuple[Any, str, str]] = attrs.field(factory=list, repr=False)

    def attach(self, client: _HasEvents) -> None:
        """Start counting the requests ``client`` makes."""
        events = client.meta.events
        uid = f"transflow-request-counter-{id(self)}"
        events.register("before-call", self._on_call, unique_id=f"{uid}-call")
        events.register("before-send", self._on_send, unique_id=f"{uid}-send")
        self._attached.append((events, "before-call", f"{uid}-call"))
        self._attached.append((events, "before-send", f"{uid}-send"))
        if client.meta.service_model.service_name == "sqs":
            name = "after-call.sqs.ReceiveMessage"
            events.register(name, self._on_receive, unique_id=f"{uid}-receive")
            self._attached.append((events, name, f"{uid}-receive"))

    def detach(self) -> None:
        """Stop counting on every client."""
        for events, name, uid in self._attached:
            events.unregister(name, unique_id=uid)
        self._attached.clear()

    def _on_call(self, model: Any, **_: Any) -> None:
        key = (model.service_model.service_name, model.name)
        with self._lock:
            self.calls[key] += 1

    def _on_send(self, event_name: str, **_: Any) -> None:
        # event_name is "before-send.{service}.{operation}"
        parts = [*event_name.split(".", 2), "?", "?"]
        with self._lock:
            self.attempts[(parts[1], parts[2])] += 1

    def _on_receive(self, parsed: Any, **_: Any) -> None:
        if not parsed.get("Messages"):
            with self._lock:
                self.empty_receives += 1

    def busy_total(self, service: str) -> int:
        """API calls of ``service``, not counting empty receives."""
        return self.total(service) - (self.empty_receives if service == "sqs" else 0)

    def total(self, service: str | None = None) -> int:
        """API calls made, for one service (``"sqs"``, ``"s3"``) or for all."""
        with self._lock:
            return sum(n for (svc, _), n in self.calls.items() if service in (None, svc))

    def count(self, operation: str, service: str | None = None) -> int:
        """API calls made of one operation (``"SendMessageBatch"``)."""
        with self._lock:
            return sum(
                n
                for (svc, op), n in self.calls.items()
                if op == operation and service in (None, svc)
            )

    def reset(self) -> None:
        """Forget what was counted so far."""
        with self._lock:
            self.calls.clear()
            self.attempts.clear()
            self.empty_receives = 0


@contextmanager
def count_requests(*clients: _HasEvents) -> Iterator[RequestCounter]:
    """Count the requests ``clients`` make inside the ``with`` block."""
    counter = RequestCounter()
    for client in clients:
        counter.attach(client)
    try:
        yield counter
    finally:
        counter.detach()
