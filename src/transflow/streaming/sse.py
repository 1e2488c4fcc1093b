"""Server-Sent Events: encoding by the WHATWG rules, streams for WSGI and ASGI, and what a
request asks for (its channel, its token).

No web framework is imported here: :func:`stream` yields bytes any WSGI server (or Flask,
Django, …) can send, :func:`astream` is an async iterator for any ASGI server (Starlette,
FastAPI, …). A host serving them from its own route reads the request with
:func:`channel_from_query` and :func:`bearer_token`; the ready apps that do all of it are in
:mod:`transflow.streaming.apps`. No AWS either: the subscription is passed in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Generator, Mapping
from typing import TYPE_CHECKING, Protocol

from transflow._wire.channels import branch_channel, upload_channel
from transflow.errors import (
    ChannelError,
    SseEncodingError,
    SubscriberLaggedError,
    SubscriptionClosedError,
)

if TYPE_CHECKING:
    from transflow._wire.model import ProgressEvent

__all__ = [
    "DEFAULT_HEARTBEAT",
    "HEADERS",
    "astream",
    "bearer_token",
    "channel_from_query",
    "comment",
    "dropped_events",
    "encode",
    "stream",
]

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 15.0
"""Seconds of silence after which a comment line is sent, so proxies and load balancers
(ALB's idle timeout is 60 s, nginx's proxy_read_timeout 60 s) keep the connection open."""

HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    # nginx buffers proxied responses unless told not to; a buffered stream looks frozen.
    ("X-Accel-Buffering", "no"),
)
"""The response headers of an event stream. No ``Connection`` header: HTTP/2 forbids it and
HTTP/1.1 keeps the connection open anyway."""

_NEWLINES = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_CHANNEL_CHARS = 512
"""Longer ``?channel=`` values are refused (400): no real channel comes close."""


# -- encoding -----------------------------------------------------------------------------


def _field(name: str, value: str) -> str:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise SseEncodingError(
            f"SSE {name} {value!r} contains CR, LF or NUL, which would split or end the event "
            f"on the client; remove them from the {name}"
        )
    return value


def encode(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event as UTF-8 bytes, ending with the blank line that dispatches it.

    ``data`` may hold any text: it is split on CRLF, CR and LF into ``data:`` lines, which the
    client joins with LF. (A client does not dispatch an event whose data is empty.)
    """
    if not isinstance(data, str):
        raise SseEncodingError(f"SSE data must be a str, not {type(data).__name__}")
    lines: list[str] = []
    if event is not None:
        lines.append(f"event: {_field('event', event)}")
    if id is not None:
        lines.append(f"id: {_field('id', id)}")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise SseEncodingError(f"SSE retry must be a non-negative integer, not {retry!r}")
        lines.append(f"retry: {retry}")
    lines.extend(f"data: {line}" for line in _NEWLINES.split(data))
    return ("\n".join(lines) + "\n\n").encode("utf-8", "surrogatepass")


def comment(text: str = "") -> bytes:
    """A comment, which clients ignore: the heartbeat that keeps idle connections open."""
    return b"".join(f":{(' ' + line) if line else ''}\n".encode() for line in _NEWLINES.split(text))


# -- streams ------------------------------------------------------------------------------


class _Feed(Protocol):
    """What a stream reads: a :class:`~transflow.streaming.fanout.Subscription`, or anything
    with its channel, snapshot, get/aget and close."""

    @property
    def channel(self) -> str: ...

    def snapshot_json(self) -> str: ...

    def get(self, timeout: float | None = None) -> ProgressEvent | None: ...

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None: ...

    def close(self) -> None: ...


_HEARTBEAT = comment()
_drops_lock = threading.Lock()
_drops = 0


def dropped_events() -> int:
    """Events the streams of this process skipped because they cannot be encoded (an id
    with CR or LF, a number too long for JSON): each is logged, and the stream goes on."""
    with _drops_lock:
        return _drops


# The bytes of the events encoded last with their own ids (by id(), the event and the id
# kept with them so the id stays its own): the subscribers of an upload, woken one after
# another, take the same event objects and encode each once between them, also when each
# takes several.
_ENCODED = 2048
_encoded: dict[int, tuple[object, str | None, bytes]] = {}

# Events at most written in one chunk by astream: those already waiting when the stream
# wakes (the loop fell behind a burst).
_BATCH = 64


def _event_bytes(
    event: ProgressEvent, feed: _Feed | None = None, event_id: str | None = None
) -> bytes | None:
    global _drops  # noqa: PLW0603 - process-wide, read by dropped_events()
    # A branch subscription's id is its cursor, which any hub instance resumes from.
    event_id = event_id or getattr(feed, "last_event_id", None) or event.event_id
    found = _encoded.get(id(event))
    if found is not None and found[0] is event and found[1] == event_id:
        return found[2]  # the common case, once per write: one lookup, no id built
    own = event_id == event.event_id
    try:
        chunk = encode(event.to_json(), id=event_id)
    except (SseEncodingError, ValueError) as exc:
        # One hostile event must not end every stream that carries it (and again on each
        # reconnect): skip it, count it, keep streaming.
        with _drops_lock:
            _drops += 1
        log.error(  # noqa: TRY400 - bad data, not a bug: the reason is enough
            "SSE: dropping an event of %r that cannot be encoded: %s", event.channel, exc
        )
        return None
    if own:
        _encoded[id(event)] = (event, event_id, chunk)
        while len(_encoded) > _ENCODED:
            # Another thread may pop the same oldest entry: a miss costs one encoding.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del _encoded[next(iter(_encoded))]
    return chunk


def _opening(subscription: _Feed, retry: int | None) -> bytes:
    # retry: goes inside the snapshot's block: a block of its own has no data, and some
    # clients (httpx-sse) yield it as an empty message that json.loads then fails on.
    try:
        snapshot = subscription.snapshot_json()
    except ValueError as exc:  # a status holding a number json cannot write
        log.error(  # noqa: TRY400 - bad data, not a bug: the reason is enough
            "SSE: snapshot of %r cannot be encoded: %s", subscription.channel, exc
        )
        snapshot = json.dumps({"channel": subscription.channel, "error": "SNAPSHOT_UNAVAILABLE"})
    return encode(snapshot, event="snapshot", retry=retry)


def _lagged(error: SubscriberLaggedError) -> bytes:
    return encode(json.dumps({"message": str(error)}), event="lagged")


def stream(
    subscription: _Feed,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> Generator[bytes, None, None]:
    """The event stream of a subscription, for a WSGI server: the ``snapshot`` event first,
    then each progress event (its id and JSON), a comment after ``heartbeat`` seconds of
    silence. A lagging subscriber gets a ``lagged`` event and the stream ends; the browser
    reconnects with its ``Last-Event-ID`` and resumes. Closing the iterator (the server does
    when the client goes away) closes the subscription.

    Each open stream holds its server thread, parked in ``subscription.get``: the ceiling is
    the server's thread pool (see docs/streaming.md, "Many subscribers per process")."""
    written = getattr(subscription, "mark_written", None)
    try:
        yield _opening(subscription, retry)
        while True:
            try:
                event = subscription.get(timeout=heartbeat)
            except SubscriberLaggedError as exc:
                yield _lagged(exc)
                return
            except SubscriptionClosedError:
                return
            chunk = _HEARTBEAT if event is None else _event_bytes(event, subscription)
            if chunk is not None:
                yield chunk
                if event is not None and written is not None:
                    written()  # resumed: the server took the chunk
    finally:
        subscription.close()


async def astream(
    subscription: _Feed,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> AsyncIterator[bytes]:
    """:func:`stream` for ASGI: waits on the event loop without holding a thread. A
    :class:`~transflow.streaming.fanout.Subscription` waits without a task or timer of its
    own: its heartbeat comes from its loop's one timer.

    The heartbeat comes every ``heartbeat`` seconds whatever else was written (the first
    after a fraction of it, spread over the period from one stream to the next), so the
    streams of a loop keep their heartbeats apart even after an event woke them all at
    once. Events already waiting when the stream wakes are written together, in one
    chunk (at most 64)."""
    # Imported here: only ASGI hosts get this far, and their loop has loaded asyncio.
    import asyncio  # noqa: PLC0415

    try:
        clock = asyncio.get_running_loop().time
    except RuntimeError:  # a feed of another event loop library (trio, under anyio)
        clock = time.monotonic
    written = getattr(subscription, "mark_written", None)
    take_ready = getattr(subscription, "take_ready", None)
    try:
        yield _opening(subscription, retry)
        beat = clock() + _first_beat(heartbeat)
        while True:
            now = clock()
            left = beat - now
            event = None
            if left > 0:
                try:
                    event = await subscription.aget(timeout=left)
                except SubscriberLaggedError as exc:
                    yield _lagged(exc)
                    return
                except SubscriptionClosedError:
                    return
            if event is None:  # the beat is due
                yield _HEARTBEAT
                beat += heartbeat
                if beat <= now:  # the loop was held up for a whole period
                    beat = now + heartbeat
                continue
            chunk = _event_bytes(event, subscription)
            if take_ready is not None:
                # What else is waiting goes out in the same write: one send, not one each.
                more = [_event_bytes(e, None, i) for e, i in take_ready(_BATCH - 1)]
                if more:
                    chunk = b"".join(c for c in (chunk, *more) if c is not None)
            if chunk:
                yield chunk
                if written is not None:
                    written()  # resumed: the server took the chunk
    finally:
        subscription.close()


# Golden-ratio steps spread the first heartbeats of consecutive streams evenly over the
# period, however many there are and whenever they connected.
_GOLDEN = 0.6180339887498949
_spread = 0.0


def _first_beat(heartbeat: float) -> float:
    global _spread  # noqa: PLW0603 - a racing update only repeats a fraction: harmless
    _spread = (_spread + _GOLDEN) % 1.0
    return heartbeat * (1.0 - _spread)


# -- requests: what a host's own route reads ----------------------------------------------


def channel_from_query(query: Mapping[str, list[str]]) -> str:
    """The channel a request asks for: ``?channel=upload:{branch}:{uploadId}`` (or ``…:*``),
    or ``?branch={branch}`` for a whole branch (with ``&uploadId=`` for one upload).
    Raises :class:`ChannelError` otherwise, and for control characters (CR, LF, …) or more
    than :data:`MAX_CHANNEL_CHARS` characters."""
    channel = (query.get("channel") or [""])[0]
    branch = (query.get("branch") or [""])[0]
    upload_id = (query.get("uploadId") or [""])[0]
    for name, value in (("channel", channel), ("branch", branch), ("uploadId", upload_id)):
        if _CONTROL.search(value) or len(value) > MAX_CHANNEL_CHARS:
            raise ChannelError(
                f"{name} must be at most {MAX_CHANNEL_CHARS} characters without control "
                "characters (CR, LF, NUL, …); no channel holds them"
            )
    if channel:
        parts = channel.split(":", 2)
        if len(parts) != 3 or parts[0] != "upload" or not parts[1] or not parts[2]:
            raise ChannelError(
                f"channel {channel!r} is not upload:{{branch}}:{{uploadId}} or "
                "upload:{branch}:*; ask for ?channel=upload:main:upload-abc or ?branch=main"
            )
        return channel
    if branch:
        if ":" in branch:
            raise ChannelError(f"branch {branch!r} must not contain ':'")
        return upload_channel(branch, upload_id) if upload_id else branch_channel(branch)
    raise ChannelError(
        "say which channel to stream: ?channel=upload:{branch}:{uploadId} or ?branch="
    )


def bearer_token(authorization: str | None, query: Mapping[str, list[str]]) -> str | None:
    """The stream token of a request: ``Authorization: Bearer <token>``, else ``?token=``
    (EventSource cannot set headers). For hosts that serve :func:`stream` from their own
    route and check the token with :func:`transflow.verify_stream_token`."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return (query.get("token") or [""])[0] or None
