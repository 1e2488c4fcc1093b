"""What a browser does, with the standard library: ask for an upload, POST the files to S3
with their presigned forms, and follow the upload's progress over Server-Sent Events."""

from __future__ import annotations

import json
import mimetypes
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from transflow._wire.model import ProgressEvent, converter
from transflow.errors import TransflowError
from transflow.streaming.snapshot import UploadState, UploadStatus, fold_event

__all__ = ["SseMessage", "UploadFollower", "post_file", "post_json", "read_sse"]

TERMINAL = (UploadState.COMPLETED, UploadState.ERROR)


class DemoClientError(TransflowError):
    """A request of the demo client failed (the message says which and why)."""


def post_json(url: str, data: object, *, timeout: float = 30) -> Any:
    """POST JSON, return the decoded JSON answer."""
    request = urllib.request.Request(  # noqa: S310 - the demo's own http URL
        url,
        data=json.dumps(data).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise DemoClientError(f"POST {url}: {exc.code} {exc.read()[:300]!r}") from exc


def _multipart(fields: Mapping[str, str], file: Path, content_type: str) -> tuple[bytes, str]:
    boundary = f"transflow-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    # The file goes last: S3 ignores form fields after it.
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file.name}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        + file.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_file(url: str, fields: Mapping[str, str], file: Path, *, timeout: float = 60) -> int:
    """POST ``file`` with its presigned form ``fields`` to S3, as an HTML form would."""
    kind = fields.get("Content-Type") or mimetypes.guess_type(file.name)[0]
    body, header = _multipart(fields, file, kind or "application/octet-stream")
    request = urllib.request.Request(  # noqa: S310 - the presigned URL of the endpoint
        url, data=body, headers={"Content-Type": header}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DemoClientError(
            f"upload of {file.name} refused: {exc.code} {exc.read()[:300]!r}"
        ) from exc


@attrs.frozen
class SseMessage:
    """One dispatched server-sent event."""

    event: str
    data: str
    id: str | None


def read_sse(lines: Iterator[bytes]) -> Iterator[SseMessage]:
    """Parse an event stream (WHATWG rules, the parts the demo needs)."""
    event, last_id = "", None
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseMessage(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value


@attrs.define
class UploadFollower:
    """Follows one upload's channel over SSE on a thread, folding its status; reconnects
    with ``Last-Event-ID`` when the stream ends before the upload does. ``token`` is the
    upload ticket's stream token, sent as ``Authorization: Bearer``."""

    events_url: str
    channel: str
    on_change: Callable[[UploadStatus], None] = lambda _status: None
    token: str | None = attrs.field(default=None, repr=False)
    status: UploadStatus = attrs.field(init=False)
    events: int = attrs.field(default=0, init=False)
    reconnects: int = attrs.field(default=0, init=False)
    _last_id: str | None = attrs.field(default=None, init=False)
    _done: threading.Event = attrs.field(factory=threading.Event, init=False)
    _ready: threading.Event = attrs.field(factory=threading.Event, init=False)
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.status = UploadStatus(self.channel)

    def start(self, timeout: float = 10) -> UploadFollower:
        """Connect; returns once the snapshot arrived (so no event is missed after it)."""
        self._thread = threading.Thread(target=self._run, name=f"sse {self.channel}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise DemoClientError(f"no snapshot from {self.events_url} within {timeout}s")
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for ``done`` or the final ``error``; whether it came."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        self._stop.set()

    @property
    def finished(self) -> bool:
        return self.status.state in TERMINAL

    def _run(self) -> None:
        query = urllib.parse.urlencode({"channel": self.channel})
        while not self._stop.is_set() and not self.finished:
            headers = {"Accept": "text/event-stream"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            if self._last_id:
                headers["Last-Event-ID"] = self._last_id
            request = urllib.request.Request(f"{self.events_url}?{query}", headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                    for message in read_sse(iter(response.readline, b"")):
                        self._take(message)
                        if self.finished or self._stop.is_set():
                            break
            except (OSError, urllib.error.URLError):
                pass  # reconnect below, as EventSource does
            if not self.finished and not self._stop.is_set():
                self.reconnects += 1
                self._stop.wait(0.2)
        self._done.set()

    def _take(self, message: SseMessage) -> None:
        if message.event == "snapshot":
            snapshot = converter.structure(json.loads(message.data), UploadStatus)
            self.status = snapshot if snapshot.state is not UploadState.QUEUED else self.status
            self._last_id = snapshot.last_event_id or self._last_id
            self._ready.set()
        elif message.event in ("message", "progress"):
            event = ProgressEvent.from_json(message.data)
            self.status = fold_event(self.status, event)
            self.events += 1
            self._last_id = message.id or self._last_id
        else:
            return
        self.on_change(self.status)
