"""The progress hub the benchmarks use: ``transflow.hub.ProgressHub`` when installed.

Until the streaming work is merged, a minimal stand-in with the same surface (``start``,
``stop``, ``subscribe(channel).get(timeout)``) consumes the progress queue with
ReceiveMessage + DeleteMessageBatch, which is what the hub does on the wire. Results made
with it are labelled ``stand-in`` (``HUB_KIND``).
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

import attrs

from transflow.model import ProgressEvent
from transflow.sqs_batch import delete_batch

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

try:
    from transflow.hub import ProgressHub as _RealHub  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the streaming issue is not merged yet
    _RealHub = None

HUB_KIND = (
    "transflow.hub.ProgressHub" if _RealHub is not None else "stand-in (streaming not merged)"
)


@attrs.define(eq=False)
class _Sub:
    channel: str
    items: queue.Queue[ProgressEvent] = attrs.field(factory=queue.Queue)

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        try:
            return self.items.get(timeout=timeout) if timeout != 0 else self.items.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        return None


@attrs.define(eq=False)
class _StandInHub:
    sqs: SQSClient
    progress_queue_url: str
    wait_time_seconds: int = 1
    _subs: dict[str, list[_Sub]] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> _StandInHub:
        self._thread = threading.Thread(target=self._run, daemon=True, name="hub-stand-in")
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return True

    def subscribe(self, channel: str, last_event_id: str | None = None) -> _Sub:
        sub = _Sub(channel)
        with self._lock:
            self._subs.setdefault(channel, []).append(sub)
        return sub

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self.sqs.receive_message(
                QueueUrl=self.progress_queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_time_seconds,
            ).get("Messages", [])
            for message in messages:
                event = ProgressEvent.from_json(message["Body"])
                with self._lock:
                    subs = list(self._subs.get(event.channel, ()))
                for sub in subs:
                    sub.items.put(event)
            if messages:
                delete_batch(
                    self.sqs,
                    self.progress_queue_url,
                    [(m["MessageId"], m["ReceiptHandle"]) for m in messages],
                )


def progress_hub(sqs: SQSClient, progress_queue_url: str, **options: Any) -> Any:
    """A started-later hub on the progress queue (call ``start()``)."""
    if _RealHub is not None:
        return _RealHub(sqs, progress_queue_url, **options)
    return _StandInHub(sqs, progress_queue_url)
