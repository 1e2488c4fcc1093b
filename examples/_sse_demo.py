"""What the two SSE examples share: a progress queue on the embedded endpoint, events
published the way the ProgressPublisher sends them, and a tiny EventSource-like reader."""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING, Any

from transflow import OutgoingMessage, ProgressEvent, send_batch

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def progress_queue(sqs: SQSClient) -> str:
    return sqs.create_queue(QueueName="myapp-main-progress.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]


def demo_events(branch: str, upload_id: str) -> list[ProgressEvent]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("start", {"template_id": "audio-processing"}),
        ("step:start", {"step": "transcode"}),
        ("progress", {"step": "transcode", "percent": 50}),
        ("step:done", {"step": "transcode"}),
        ("done", {}),
    ]
    return [
        ProgressEvent.create(kind, upload_id=upload_id, branch=branch, seq=seq, **fields)
        for seq, (kind, fields) in enumerate(steps, start=1)
    ]


def publish(sqs: SQSClient, url: str, events: list[ProgressEvent]) -> None:
    # Group = upload id (one upload's events stay in order), dedup id = event id.
    result = send_batch(
        sqs,
        url,
        [
            (
                e.event_id or "",
                OutgoingMessage(e.to_json(), group_id=e.upload_id, dedup_id=e.event_id),
            )
            for e in events
        ],
    )
    if not result.ok:
        raise RuntimeError(f"could not publish: {result.failed}")


def read_until_done(url: str, timeout: float = 30) -> list[tuple[str, str]]:
    """(event type, data) pairs of an event stream until the upload's ``done`` event."""
    seen: list[tuple[str, str]] = []
    kind, data = "message", list[str]()
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback demo
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    seen.append((kind, "\n".join(data)))
                    if kind == "message" and json.loads(seen[-1][1])["type"] == "done":
                        return seen
                kind, data = "message", []
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
    return seen
