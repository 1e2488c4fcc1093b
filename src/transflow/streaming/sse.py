"""Server-Sent Events: encoding by the WHATWG rules, streams for WSGI and ASGI, and two ready
apps that serve a :class:`~transflow.streaming.hub.ProgressHub`.

No web framework is imported here: :func:`stream` yields bytes any WSGI server (or Flask,
Django, …) can send, :func:`astream` is an async iterator for any ASGI server (Starlette,
FastAPI, …), and :func:`wsgi_app` / :func:`asgi_app` are plain WSGI and ASGI callables a host
mounts under a path of its choosing. No AWS either: the hub is passed in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from transflow._wire.channels import branch_channel, upload_channel
from transflow.errors import (
    ChannelError,
    SseEncodingError,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionDenied,
)

if TYPE_CHECKING:
    from transflow._wire.model import ProgressEvent

__all__ = [
    "DEFAULT_HEARTBEAT",
    "HEADERS",
    "Authorize",
    "asgi_app",
    "astream",
    "comment",
    "encode",
    "stream",
    "wsgi_app",
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

Authorize = Callable[[Any, str], bool]
"""``authorize(request, channel) -> bool``: the request is the WSGI environ or the ASGI scope."""


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


class Subscription(Protocol):
    """What the streams need of a :class:`~transflow.streaming.hub.Subscription`."""

    @property
    def channel(self) -> str: ...

    def snapshot_json(self) -> str: ...

    def get(self, timeout: float | None = None) -> ProgressEvent | None: ...

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None: ...

    def close(self) -> None: ...


def _event_bytes(event: ProgressEvent) -> bytes:
    return encode(event.to_json(), id=event.event_id)


def _opening(subscription: Subscription, retry: int | None) -> bytes:
    head = f"retry: {retry}\n\n".encode() if retry is not None else b""
    return head + encode(subscription.snapshot_json(), event="snapshot")


def _lagged(error: SubscriberLagged) -> bytes:
    return encode(json.dumps({"message": str(error)}), event="lagged")


def stream(
    subscription: Subscription,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> Iterator[bytes]:
    """The event stream of a subscription, for a WSGI server: the ``snapshot`` event first,
    then each progress event (its id and JSON), a comment after ``heartbeat`` seconds of
    silence. A lagging subscriber gets a ``lagged`` event and the stream ends; the browser
    reconnects with its ``Last-Event-ID`` and resumes. Closing the iterator (the server does
    when the client goes away) closes the subscription."""
    try:
        yield _opening(subscription, retry)
        while True:
            try:
                event = subscription.get(timeout=heartbeat)
            except SubscriberLagged as exc:
                yield _lagged(exc)
                return
            except SubscriptionClosed:
                return
            yield comment() if event is None else _event_bytes(event)
    finally:
        subscription.close()


async def astream(
    subscription: Subscription,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> AsyncIterator[bytes]:
    """:func:`stream` for ASGI: waits on the event loop without holding a thread."""
    try:
        yield _opening(subscription, retry)
        while True:
            try:
                event = await subscription.aget(timeout=heartbeat)
            except SubscriberLagged as exc:
                yield _lagged(exc)
                return
            except SubscriptionClosed:
                return
            yield comment() if event is None else _event_bytes(event)
    finally:
        subscription.close()


# -- the stream handler: query parsing shared by both apps ---------------------------------


class _Hub(Protocol):
    def subscribe(
        self, channel: str, last_event_id: str | None = None, *, principal: Any = None
    ) -> Subscription: ...


def channel_from_query(query: Mapping[str, list[str]]) -> str:
    """The channel a request asks for: ``?channel=upload:{branch}:{uploadId}`` (or ``…:*``),
    or ``?branch={branch}`` for a whole branch (with ``&uploadId=`` for one upload).
    Raises :class:`ChannelError` otherwise."""
    channel = (query.get("channel") or [""])[0]
    branch = (query.get("branch") or [""])[0]
    upload_id = (query.get("uploadId") or [""])[0]
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


def _last_event_id(header: str | None, query: Mapping[str, list[str]]) -> str | None:
    # EventSource sends the header on reconnect; polyfills often pass it in the query.
    value = header or (query.get("lastEventId") or [""])[0]
    return value or None


def _open(
    hub: _Hub,
    request: Any,
    query_string: str,
    last_event_header: str | None,
    authorize: Authorize | None,
) -> tuple[int, str, Subscription | None]:
    query = parse_qs(query_string, keep_blank_values=False)
    try:
        channel = channel_from_query(query)
    except ChannelError as exc:
        return 400, str(exc), None
    if authorize is not None and not authorize(request, channel):
        return 403, f"not allowed to stream {channel}", None
    try:
        sub = hub.subscribe(channel, _last_event_id(last_event_header, query), principal=request)
    except SubscriptionDenied as exc:
        return 403, str(exc), None
    except ChannelError as exc:
        return 400, str(exc), None
    except SubscriptionClosed as exc:
        return 503, str(exc), None
    return 200, "", sub


_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    403: "403 Forbidden",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}


def wsgi_app(
    hub: _Hub,
    *,
    authorize: Authorize | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app for ``GET ?channel=…`` / ``?branch=…`` that honours ``Last-Event-ID``.

    ``authorize(environ, channel)`` may refuse a request (403); the hub's own ``authorize``
    hook is called too, with the environ as principal. Each open stream holds one server
    thread, so run it on a threaded server sized for the connections you expect (or use the
    ASGI app).
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            start_response(_STATUS[405], [("Content-Type", "text/plain"), ("Allow", "GET")])
            return [b"only GET streams events\n"]
        status, message, sub = _open(
            hub,
            environ,
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_LAST_EVENT_ID"),
            authorize,
        )
        if sub is None:
            start_response(_STATUS[status], [("Content-Type", "text/plain; charset=utf-8")])
            return [message.encode() + b"\n"]
        start_response(_STATUS[200], list(HEADERS))
        return stream(sub, heartbeat=heartbeat, retry=retry)

    return app


ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIScope = MutableMapping[str, Any]


def asgi_app(
    hub: _Hub,
    *,
    authorize: Authorize | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]:
    """An ASGI app for ``GET ?channel=…`` / ``?branch=…`` that honours ``Last-Event-ID``.

    ``authorize(scope, channel)`` may refuse a request (403); the hub's own hook is called too,
    with the scope as principal. The stream ends when the client disconnects. Lifespan
    messages are acknowledged; start and stop the hub in the host's own lifespan.
    """

    async def app(scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"transflow.streaming.sse.asgi_app serves HTTP, not {scope['type']}")
        if scope.get("method", "GET") != "GET":
            await _plain(send, 405, "only GET streams events\n", [(b"allow", b"GET")])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, message, sub = _open(
            hub,
            scope,
            scope.get("query_string", b"").decode("latin-1"),
            headers.get("last-event-id"),
            authorize,
        )
        if sub is None:
            await _plain(send, status, message + "\n")
            return
        await _serve(sub, receive, send, heartbeat=heartbeat, retry=retry)

    return app


async def _lifespan(receive: ASGIReceive, send: ASGISend) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _plain(
    send: ASGISend, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


async def _serve(
    sub: Subscription,
    receive: ASGIReceive,
    send: ASGISend,
    *,
    heartbeat: float,
    retry: int | None,
) -> None:
    # Imported here: only ASGI hosts get this far, and their loop has loaded asyncio.
    import asyncio  # noqa: PLC0415

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        sub.close()  # wakes the stream, which then ends

    watcher = asyncio.ensure_future(watch_disconnect())
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.lower().encode(), v.encode()) for k, v in HEADERS],
            }
        )
        async for chunk in astream(sub, heartbeat=heartbeat, retry=retry):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:  # the client went away mid-write (servers raise their own subclasses)
        log.debug("SSE client of %s went away", sub.channel)
    finally:
        sub.close()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
