"""Test support for streaming: a WHATWG-conformant SSE parser written independently of
transflow.streaming.sse, real HTTP servers in threads (werkzeug for WSGI, uvicorn for ASGI), an SSE
client on a thread, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import codecs
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._wire.model import ProgressEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test if ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)


# -- the parser (https://html.spec.whatwg.org/multipage/server-sent-events.html) -----------


@attrs.frozen
class SseEvent:
    type: str
    data: str
    last_event_id: str


@attrs.define
class SseParser:
    """Feed it decoded text in any chunks; it returns the events dispatched so far. Follows
    WHATWG's "interpret an event stream" (HTML, 9.2.6). Beyond what a browser keeps, it
    records the reconnection time in effect at each dispatch (``retry_at``, one per event)
    and the fields of blocks that dispatched nothing (``dataless``: a ``retry:`` alone in a
    block is such a block, which some clients turn into an empty message)."""

    retry: int | None = None
    retry_at: list[int | None] = attrs.field(factory=list)
    dataless: list[list[str]] = attrs.field(factory=list)
    _fields: list[str] = attrs.field(factory=list)
    _pending: str = ""
    _data: list[str] = attrs.field(factory=list)
    _type: str = ""
    _last_id: str = ""
    _started: bool = False

    def feed(self, text: str) -> list[SseEvent]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        buffer = self._pending + text
        events: list[SseEvent] = []
        start = 0
        i = 0
        while i < len(buffer):
            char = buffer[i]
            if char in "\r\n":
                if char == "\r" and i + 1 == len(buffer):
                    break  # CR at the end of a chunk: it may be the first half of CRLF
                line = buffer[start:i]
                i += 2 if char == "\r" and buffer[i + 1] == "\n" else 1
                start = i
                event = self._line(line)
                if event is not None:
                    events.append(event)
            else:
                i += 1
        self._pending = buffer[start:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._fields.append(field)
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, kind, fields = self._data, self._type, self._fields
        self._data, self._type, self._fields = [], "", []
        if not data:
            if fields:
                self.dataless.append(fields)
            return None
        self.retry_at.append(self.retry)
        return SseEvent(kind or "message", "\n".join(data), self._last_id)


def parse_all(raw: bytes) -> list[SseEvent]:
    return SseParser().feed(raw.decode("utf-8"))


# -- servers ----------------------------------------------------------------------------


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """A threaded werkzeug server on a free loopback port; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- a client ----------------------------------------------------------------------------


@attrs.define
class SseClient:
    """Reads an event stream on a thread and parses it; ``events`` grows as they arrive."""

    url: str
    headers: dict[str, str] = attrs.field(factory=dict)
    events: list[SseEvent] = attrs.field(factory=list)
    raw: bytearray = attrs.field(factory=bytearray)
    status: int | None = None
    response_headers: dict[str, str] = attrs.field(factory=dict)
    ended: threading.Event = attrs.field(factory=threading.Event)
    error: BaseException | None = None
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> SseClient:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        parser = SseParser()
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30.0)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                self.status = response.status_code
                self.response_headers = dict(response.headers)
                for chunk in response.iter_raw():
                    with self._lock:
                        self.raw.extend(chunk)
                        self.events.extend(parser.feed(decoder.decode(chunk)))
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # reported to the test, which decides
            if not self._stop.is_set():
                self.error = exc
        finally:
            self.ended.set()

    def snapshot(self) -> list[SseEvent]:
        with self._lock:
            return list(self.events)

    def of_type(self, kind: str) -> list[SseEvent]:
        return [e for e in self.snapshot() if e.type == kind]

    def wait_for(self, condition: Callable[[list[SseEvent]], bool], timeout: float = 20) -> None:
        def check() -> bool:
            if self.error is not None:
                raise AssertionError(f"SSE client failed: {self.error!r}")
            return condition(self.snapshot())

        wait_until(check, timeout, f"SSE events at {self.url}")

    def close(self) -> None:
        """Stop reading (at the next chunk; test servers send heartbeats often)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


# -- publishing --------------------------------------------------------------------------

FAST = RetryPolicy(attempts=5, initial=0.001, maximum=0.02)


def publish(sqs: SQSClient, url: str, events: list[ProgressEvent]) -> None:
    """Send progress events as the publisher does: group = upload id, dedup = event id."""
    result = send_batch(
        sqs,
        url,
        [
            (
                e.event_id or str(i),
                OutgoingMessage(e.to_json(), group_id=e.upload_id, dedup_id=e.event_id),
            )
            for i, e in enumerate(events)
        ],
        policy=FAST,
    )
    assert result.ok, result.failed


def fifo_queue(sqs: SQSClient, name: str, visibility: int = 30) -> str:
    return sqs.create_queue(
        QueueName=name,
        Attributes={"FifoQueue": "true", "VisibilityTimeout": str(visibility)},
    )["QueueUrl"]


def queue_counts(sqs: SQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs_ = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs_["ApproximateNumberOfMessages"]),
        int(attrs_["ApproximateNumberOfMessagesNotVisible"]),
    )


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


@contextmanager
def fast_moto_clock() -> Iterator[None]:
    """Give moto's SQS model a fast clock while a test runs.

    moto reads the time through ``datetime`` arithmetic (about 5 µs) once per queued message
    on every send and receive, so a queue a few thousand messages deep costs seconds per
    call. ``time.time()`` is the same clock read in 0.1 µs: SQS behaviour is unchanged (the
    server runs in this process, so the patch reaches it)."""
    import moto.sqs.models

    sqs_models: Any = moto.sqs.models

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else original(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    original = sqs_models.unix_time
    original_millis = sqs_models.unix_time_millis
    sqs_models.unix_time = unix_time
    sqs_models.unix_time_millis = unix_time_millis
    try:
        yield
    finally:
        sqs_models.unix_time = original
        sqs_models.unix_time_millis = original_millis
