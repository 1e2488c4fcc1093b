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
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

import attrs

from transflow._wire.channels import branch_channel, upload_channel
from transflow._wire.tokens import (
    TOKEN_VERSION,
    StreamSecret,
    check_stream_secret,
    verify_stream_token,
)
from transflow.errors import (
    ChannelError,
    ConfigError,
    SseEncodingError,
    StreamTokenError,
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
    "bearer_token",
    "channel_from_query",
    "comment",
    "dropped_events",
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_CHANNEL_CHARS = 512
"""Longer ``?channel=`` values are refused (400): no real channel comes close."""
# What the hub's ids look like, "{uploadId}:{seq}": printable ASCII, a bounded number of
# ASCII digits (so no 5,000-digit or superscript "number" reaches int()).
_LAST_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}:[0-9]{1,18}", re.ASCII)
_MAX_QUERY_FIELDS = 16

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


class _Feed(Protocol):
    """What a stream reads: a :class:`~transflow.streaming.fanout.Subscription`, or anything
    with its channel, snapshot, get/aget and close."""

    @property
    def channel(self) -> str: ...

    def snapshot_json(self) -> str: ...

    def get(self, timeout: float | None = None) -> ProgressEvent | None: ...

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None: ...

    def close(self) -> None: ...


_drops_lock = threading.Lock()
_drops = 0


def dropped_events() -> int:
    """Events the streams of this process skipped because they cannot be encoded (an id
    with CR or LF, a number too long for JSON): each is logged, and the stream goes on."""
    with _drops_lock:
        return _drops


def _event_bytes(event: ProgressEvent) -> bytes | None:
    global _drops  # noqa: PLW0603 - one process-wide counter, read by dropped_events()
    try:
        return encode(event.to_json(), id=event.event_id)
    except (SseEncodingError, ValueError) as exc:
        # One hostile event must not end every stream that carries it (and again on each
        # reconnect): skip it, count it, keep streaming.
        with _drops_lock:
            _drops += 1
        log.error(  # noqa: TRY400 - bad data, not a bug: the reason is enough
            "SSE: dropping an event of %r that cannot be encoded: %s", event.channel, exc
        )
        return None


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


def _lagged(error: SubscriberLagged) -> bytes:
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
            chunk = comment() if event is None else _event_bytes(event)
            if chunk is not None:
                yield chunk
    finally:
        subscription.close()


async def astream(
    subscription: _Feed,
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
            chunk = comment() if event is None else _event_bytes(event)
            if chunk is not None:
                yield chunk
    finally:
        subscription.close()


# -- the stream handler: query parsing shared by both apps ---------------------------------


class _Hub(Protocol):
    def subscribe(
        self, channel: str, last_event_id: str | None = None, *, principal: Any = None
    ) -> _Feed: ...


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


def _last_event_id(header: str | None, query: Mapping[str, list[str]]) -> str | None:
    # EventSource sends the header on reconnect; polyfills often pass it in the query.
    value = header or (query.get("lastEventId") or [""])[0]
    if not value:
        return None
    if not _LAST_EVENT_ID.fullmatch(value):
        # Not an id this server sent: resume from the snapshot, as for a first connection,
        # rather than refuse a browser that would then give up for good.
        log.debug("SSE: ignoring a Last-Event-ID that is not '{uploadId}:{seq}'")
        return None
    return value


def bearer_token(authorization: str | None, query: Mapping[str, list[str]]) -> str | None:
    """The stream token of a request: ``Authorization: Bearer <token>``, else ``?token=``
    (EventSource cannot set headers). For hosts that serve :func:`stream` from their own
    route and check the token with :func:`transflow.verify_stream_token`."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return (query.get("token") or [""])[0] or None


@attrs.frozen
class _Access:
    """Who may stream what: a token secret, the host's hook, or (on purpose) anyone."""

    secret: StreamSecret | None = attrs.field(repr=False)
    authorize: Authorize | None
    allow_anonymous: bool

    @classmethod
    def build(
        cls,
        what: str,
        secret: StreamSecret | None,
        authorize: Authorize | None,
        allow_anonymous: bool,
    ) -> _Access:
        if secret is not None:
            check_stream_secret(secret)
        elif authorize is None and not allow_anonymous:
            raise ConfigError(
                f"{what} refuses to serve streams it cannot protect: pass secret= (the "
                "TransflowConfig.stream_secret from TRANSFLOW_STREAM_SECRET) to accept the "
                "stream tokens create_upload issues, or authorize= for your own auth; pass "
                "allow_anonymous=True only if anyone who reaches it may follow any upload"
            )
        return cls(secret, authorize, allow_anonymous)

    def refusal(self, request: Any, channel: str, token: str | None) -> tuple[int, str] | None:
        """None when the request may stream ``channel``, else (status, reason)."""
        # With a hook too, only tokens of our format are ours: the host's own bearer
        # tokens go to its hook.
        if (
            token is not None
            and self.secret is not None
            and (self.authorize is None or token.startswith(TOKEN_VERSION + "."))
        ):
            return _token_refusal(self.secret, token, channel)
        if self.authorize is not None:
            allowed = self.authorize(request, channel)
            return None if allowed else (403, f"not allowed to stream {channel}")
        whole_branch = channel.endswith(":*")
        if self.allow_anonymous and not whole_branch:
            return None
        if whole_branch:
            return 401, (
                f"streaming the whole branch ({channel}) needs an operator token "
                "(transflow.issue_stream_token(secret, 'upload:{branch}:*')) or the host's "
                "authorize hook"
            )
        return 401, (
            "this stream needs a token: pass the upload ticket's streamToken as ?token= or "
            "in an Authorization: Bearer header"
        )


def _token_refusal(secret: StreamSecret, token: str, channel: str) -> tuple[int, str] | None:
    try:
        grant = verify_stream_token(secret, token)
    except StreamTokenError as exc:
        return 401, str(exc)
    if grant.allows(channel):
        return None
    need = " (a whole branch needs an operator token for upload:{branch}:*)"
    return 403, f"this stream token is for {grant.channel}, not {channel}" + (
        need if channel.endswith(":*") else ""
    )


def _open(
    hub: _Hub,
    access: _Access,
    request: Any,
    query_string: str,
    *,
    last_event_id: str | None,
    authorization: str | None,
) -> tuple[int, str, _Feed | None]:
    try:
        query = parse_qs(query_string, keep_blank_values=False, max_num_fields=_MAX_QUERY_FIELDS)
        channel = channel_from_query(query)
    except ValueError as exc:  # ChannelError, or too many fields for parse_qs
        return 400, str(exc), None
    refused = access.refusal(request, channel, bearer_token(authorization, query))
    if refused is not None:
        return refused[0], refused[1], None
    try:
        sub = hub.subscribe(channel, _last_event_id(last_event_id, query), principal=request)
    except (SubscriptionDenied, ChannelError, SubscriptionClosed) as exc:
        status = 403 if isinstance(exc, SubscriptionDenied) else 400
        return (503 if isinstance(exc, SubscriptionClosed) else status), str(exc), None
    return 200, "", sub


_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}
_CHALLENGE = ("WWW-Authenticate", 'Bearer realm="transflow"')


def wsgi_app(
    hub: _Hub,
    *,
    secret: StreamSecret | None = None,
    authorize: Authorize | None = None,
    allow_anonymous: bool = False,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app for ``GET ?channel=…`` / ``?branch=…`` that honours ``Last-Event-ID``.

    Deny by default. With ``secret``, a request streams when its token (``?token=`` or
    ``Authorization: Bearer``, from :func:`transflow.create_upload` or
    :func:`transflow.issue_stream_token`) covers the channel; a whole branch needs an
    operator token for ``upload:{branch}:*``. ``authorize(environ, channel)`` lets a host
    with its own auth decide instead (it is asked when no token of ours is given). Without
    either, the app refuses to be built (:class:`ConfigError`) unless
    ``allow_anonymous=True``, which lets anyone follow any single upload (never a whole
    branch). A missing or bad token is a 401, a refusal a 403.

    The hub's own ``authorize`` hook is called too, with the environ as principal. Each open
    stream holds one server thread, so run it on a threaded server sized for the
    connections you expect (or use the ASGI app).
    """
    access = _Access.build("sse.wsgi_app", secret, authorize, allow_anonymous)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            start_response(_STATUS[405], [("Content-Type", "text/plain"), ("Allow", "GET")])
            return [b"only GET streams events\n"]
        status, message, sub = _open(
            hub,
            access,
            environ,
            environ.get("QUERY_STRING", ""),
            last_event_id=environ.get("HTTP_LAST_EVENT_ID"),
            authorization=environ.get("HTTP_AUTHORIZATION"),
        )
        if sub is None:
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            start_response(_STATUS[status], headers + ([_CHALLENGE] if status == 401 else []))
            return [message.encode() + b"\n"]
        start_response(_STATUS[200], list(HEADERS))
        return _WsgiBody(stream(sub, heartbeat=heartbeat, retry=retry), sub)

    return app


@attrs.define(eq=False)
class _WsgiBody:
    """The response iterable: the server calls ``close()`` when the client goes away or the
    response ends, also when it never started iterating (closing a generator that has not
    started skips its ``finally``, which would leave the subscription behind)."""

    chunks: Generator[bytes, None, None]
    subscription: _Feed

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        try:
            self.chunks.close()
        finally:
            self.subscription.close()


ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIScope = MutableMapping[str, Any]


def asgi_app(
    hub: _Hub,
    *,
    secret: StreamSecret | None = None,
    authorize: Authorize | None = None,
    allow_anonymous: bool = False,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry: int | None = None,
    manage_hub: bool = False,
) -> Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]:
    """An ASGI app for ``GET ?channel=…`` / ``?branch=…`` that honours ``Last-Event-ID``.

    Access works as for :func:`wsgi_app` (``secret``, ``authorize(scope, channel)``,
    ``allow_anonymous``; deny by default, :class:`ConfigError` when built without any).
    The hub's own hook is called too, with the scope as principal. The stream ends when the
    client disconnects. With ``manage_hub``, the app starts the hub at lifespan startup and
    stops it at lifespan shutdown (in fan-out mode: its instance queue is unsubscribed and
    deleted when the server stops); otherwise lifespan messages are only acknowledged, and
    the host's own lifespan starts and stops the hub.
    """
    access = _Access.build("sse.asgi_app", secret, authorize, allow_anonymous)

    async def app(scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, hub if manage_hub else None)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"transflow.streaming.sse.asgi_app serves HTTP, not {scope['type']}")
        if scope.get("method", "GET") != "GET":
            await _plain(send, 405, "only GET streams events\n", [(b"allow", b"GET")])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, message, sub = _open(
            hub,
            access,
            scope,
            scope.get("query_string", b"").decode("latin-1"),
            last_event_id=headers.get("last-event-id"),
            authorization=headers.get("authorization"),
        )
        if sub is None:
            challenge = [(b"www-authenticate", _CHALLENGE[1].encode())] if status == 401 else []
            await _plain(send, status, message + "\n", challenge)
            return
        await _serve(sub, receive, send, heartbeat=heartbeat, retry=retry)

    return app


async def _lifespan(receive: ASGIReceive, send: ASGISend, hub: Any | None) -> None:
    import asyncio  # noqa: PLC0415 - a WSGI host never loads it (tests/unit/test_handler_imports)

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if hub is not None:
                # start() and stop() make AWS calls: off the event loop.
                await asyncio.get_running_loop().run_in_executor(None, hub.start)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if hub is not None:
                await asyncio.get_running_loop().run_in_executor(None, hub.stop)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _plain(
    send: ASGISend, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


async def _serve(
    sub: _Feed,
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
