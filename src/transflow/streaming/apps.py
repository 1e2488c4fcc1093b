"""Two ready apps that serve a :class:`~transflow.streaming.hub.ProgressHub` as Server-Sent
Events: :func:`wsgi_app` and :func:`asgi_app`, plain WSGI and ASGI callables a host mounts
under a path of its choosing, for ``GET ?channel=…`` / ``?branch=…`` with ``Last-Event-ID``.

Deny by default: each is built with a stream token secret, the host's ``authorize`` hook, or
(on purpose) ``allow_anonymous``. The bytes are :mod:`transflow.streaming.sse`'s. No web
framework and no AWS: the hub is passed in.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import (
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

from transflow._wire.tokens import (
    TOKEN_VERSION,
    StreamSecret,
    check_stream_secret,
    verify_stream_token,
)
from transflow.errors import (
    ChannelError,
    ConfigError,
    StreamTokenError,
    SubscriptionClosedError,
    SubscriptionDeniedError,
)
from transflow.streaming.cursor import is_cursor
from transflow.streaming.sse import (
    DEFAULT_HEARTBEAT,
    HEADERS,
    astream,
    bearer_token,
    channel_from_query,
    stream,
)

if TYPE_CHECKING:
    # The streams' protocol of a subscription: private to the streaming room.
    from transflow.streaming.sse import _Feed

__all__ = ["Authorize", "asgi_app", "wsgi_app"]

log = logging.getLogger(__name__)

# What the hub's ids look like, "{uploadId}:{seq}": printable ASCII, a bounded number of
# ASCII digits (so no 5,000-digit or superscript "number" reaches int()).
_LAST_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}:[0-9]{1,18}", re.ASCII)
_MAX_QUERY_FIELDS = 16

Authorize = Callable[[Any, str], bool]
"""``authorize(request, channel) -> bool``: the request is the WSGI environ or the ASGI scope."""


class _Hub(Protocol):
    def subscribe(
        self, channel: str, last_event_id: str | None = None, *, principal: Any = None
    ) -> _Feed: ...


def _last_event_id(header: str | None, query: Mapping[str, list[str]]) -> str | None:
    # EventSource sends the header on reconnect; polyfills often pass it in the query.
    value = header or (query.get("lastEventId") or [""])[0]
    if not value:
        return None
    if not _LAST_EVENT_ID.fullmatch(value) and not is_cursor(value):
        # Not an id this server sent: resume from the snapshot, as for a first connection,
        # rather than refuse a browser that would then give up for good.
        log.debug("SSE: ignoring a Last-Event-ID that is not '{uploadId}:{seq}' or a cursor")
        return None
    return value


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
    except (SubscriptionDeniedError, ChannelError, SubscriptionClosedError) as exc:
        status = 403 if isinstance(exc, SubscriptionDeniedError) else 400
        return (503 if isinstance(exc, SubscriptionClosedError) else status), str(exc), None
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
    access = _Access.build("wsgi_app", secret, authorize, allow_anonymous)

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
    access = _Access.build("asgi_app", secret, authorize, allow_anonymous)

    async def app(scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, hub if manage_hub else None)
            return
        if scope["type"] != "http":
            raise RuntimeError(
                f"transflow.streaming.apps.asgi_app serves HTTP, not {scope['type']}"
            )
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
