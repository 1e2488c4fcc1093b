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
import math
import re
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from typing import TYPE_CHECKING, Any, Protocol, cast
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
from transflow.streaming.limits import StreamLimits, StreamSlot
from transflow.streaming.sse import (
    _BATCH,
    DEFAULT_HEARTBEAT,
    HEADERS,
    _event_bytes,
    _first_beat,
    astream,
    bearer_token,
    channel_from_query,
    comment,
    stream,
)

if TYPE_CHECKING:
    # The streams' protocol of a subscription: private to the streaming room.
    from transflow.streaming.fanout import Subscription
    from transflow.streaming.sse import _Feed

__all__ = ["Authorize", "StreamOwner", "asgi_app", "wsgi_app"]

log = logging.getLogger(__name__)

# What the hub's ids look like, "{uploadId}:{seq}": printable ASCII, a bounded number of
# ASCII digits (so no 5,000-digit or superscript "number" reaches int()).
_LAST_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}:[0-9]{1,18}", re.ASCII)
_MAX_QUERY_FIELDS = 16

Authorize = Callable[[Any, str], bool]
"""``authorize(request, channel) -> bool``: the request is the WSGI environ or the ASGI scope."""

StreamOwner = Callable[[Any], str | None]
"""``stream_owner(request) -> str | None``: whose streams a request the ``authorize`` hook let
in counts with under ``max_streams_per_token`` (a user or session id); None: only the
process cap applies."""


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
    stream_owner: StreamOwner | None = None

    @classmethod
    def build(
        cls,
        what: str,
        secret: StreamSecret | None,
        authorize: Authorize | None,
        allow_anonymous: bool,
        stream_owner: StreamOwner | None = None,
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
        if stream_owner is not None and not callable(stream_owner):
            raise ConfigError(f"{what} stream_owner must be callable, not {stream_owner!r}")
        return cls(secret, authorize, allow_anonymous, stream_owner)

    def _is_ours(self, token: str | None) -> bool:
        # With a hook too, only tokens of our format are ours: the host's own bearer
        # tokens go to its hook.
        return (
            token is not None
            and self.secret is not None
            and (self.authorize is None or token.startswith(TOKEN_VERSION + "."))
        )

    def owner(self, request: Any, token: str | None) -> str | None:
        """Whose streams a request that may stream counts with: its token's (by signature,
        so each distinct token has its own cap), else what ``stream_owner`` says."""
        if token is not None and self._is_ours(token):
            return "token:" + token.rpartition(".")[2]
        if self.authorize is not None and self.stream_owner is not None:
            named = self.stream_owner(request)
            return None if named is None else f"owner:{named}"
        return None

    def refusal(self, request: Any, channel: str, token: str | None) -> tuple[int, str] | None:
        """None when the request may stream ``channel``, else (status, reason)."""
        if token is not None and self.secret is not None and self._is_ours(token):
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


@attrs.frozen
class _Opened:
    """What a request gets: a stream (its subscription and its slot under the caps), or a
    status and a one-line reason (with ``Retry-After`` when a cap was full)."""

    status: int
    message: str = ""
    sub: _Feed | None = None
    slot: StreamSlot | None = None
    retry_after: int | None = None


def _open(
    hub: _Hub,
    access: _Access,
    limits: StreamLimits,
    request: Any,
    query_string: str,
    *,
    last_event_id: str | None,
    authorization: str | None,
) -> _Opened:
    try:
        query = parse_qs(query_string, keep_blank_values=False, max_num_fields=_MAX_QUERY_FIELDS)
        channel = channel_from_query(query)
    except ValueError as exc:  # ChannelError, or too many fields for parse_qs
        return _Opened(400, str(exc))
    token = bearer_token(authorization, query)
    refused = access.refusal(request, channel, token)
    if refused is not None:
        return _Opened(*refused)
    # After access: a request that may not stream never takes (or is told about) a slot.
    slot = limits.acquire(access.owner(request, token))
    if isinstance(slot, str):
        return _Opened(503, slot, retry_after=limits.retry_after)
    try:
        sub = hub.subscribe(channel, _last_event_id(last_event_id, query), principal=request)
    except (SubscriptionDeniedError, ChannelError, SubscriptionClosedError) as exc:
        slot.release()
        status = 403 if isinstance(exc, SubscriptionDeniedError) else 400
        return _Opened(503 if isinstance(exc, SubscriptionClosedError) else status, str(exc))
    except BaseException:
        slot.release()
        raise
    return _Opened(200, sub=sub, slot=slot)


def _limits(limits: object) -> StreamLimits:
    if limits is None:
        return StreamLimits()
    if not isinstance(limits, StreamLimits):
        raise ConfigError(f"limits must be a transflow.StreamLimits, not {limits!r}")
    return limits


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
    limits: StreamLimits | None = None,
    stream_owner: StreamOwner | None = None,
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

    ``limits`` (a :class:`~transflow.streaming.limits.StreamLimits`; 10,000 streams per
    app and 16 per token by default) caps the streams open at once: one over a cap is a
    503 with ``Retry-After`` and a one-line reason. Each distinct stream token has its own
    per-token cap; a request the ``authorize`` hook let in counts under the key
    ``stream_owner(environ)`` returns (a user id, say), or only under the process cap
    without it. A stream gives its slot back however it ends.
    """
    access = _Access.build("wsgi_app", secret, authorize, allow_anonymous, stream_owner)
    caps = _limits(limits)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            start_response(_STATUS[405], [("Content-Type", "text/plain"), ("Allow", "GET")])
            return [b"only GET streams events\n"]
        opened = _open(
            hub,
            access,
            caps,
            environ,
            environ.get("QUERY_STRING", ""),
            last_event_id=environ.get("HTTP_LAST_EVENT_ID"),
            authorization=environ.get("HTTP_AUTHORIZATION"),
        )
        sub, slot = opened.sub, opened.slot
        if sub is None or slot is None:
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if opened.status == 401:
                headers.append(_CHALLENGE)
            if opened.retry_after is not None:
                headers.append(("Retry-After", str(opened.retry_after)))
            start_response(_STATUS[opened.status], headers)
            return [opened.message.encode() + b"\n"]
        try:
            start_response(_STATUS[200], list(HEADERS))
        except BaseException:
            sub.close()
            slot.release()
            raise
        return _WsgiBody(stream(sub, heartbeat=heartbeat, retry=retry), sub, slot)

    return app


@attrs.define(eq=False)
class _WsgiBody:
    """The response iterable: the server calls ``close()`` when the client goes away or the
    response ends, also when it never started iterating (closing a generator that has not
    started skips its ``finally``, which would leave the subscription behind)."""

    chunks: Generator[bytes, None, None]
    subscription: _Feed
    slot: StreamSlot

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        try:
            self.chunks.close()
        finally:
            try:
                self.subscription.close()
            finally:
                self.slot.release()


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
    limits: StreamLimits | None = None,
    stream_owner: StreamOwner | None = None,
    manage_hub: bool = False,
) -> Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]:
    """An ASGI app for ``GET ?channel=…`` / ``?branch=…`` that honours ``Last-Event-ID``.

    Access works as for :func:`wsgi_app` (``secret``, ``authorize(scope, channel)``,
    ``allow_anonymous``; deny by default, :class:`ConfigError` when built without any).
    The hub's own hook is called too, with the scope as principal. The stream ends when the
    client disconnects. With ``manage_hub``, the app starts the hub at lifespan startup and
    stops it at lifespan shutdown (in fan-out mode: its instance queue is unsubscribed and
    deleted when the server stops); otherwise lifespan messages are only acknowledged, and
    the host's own lifespan starts and stops the hub. ``limits`` and ``stream_owner``
    (called with the scope) cap the streams open at once as for :func:`wsgi_app`.
    """
    access = _Access.build("asgi_app", secret, authorize, allow_anonymous, stream_owner)
    caps = _limits(limits)

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
        opened = _open(
            hub,
            access,
            caps,
            scope,
            scope.get("query_string", b"").decode("latin-1"),
            last_event_id=headers.get("last-event-id"),
            authorization=headers.get("authorization"),
        )
        sub, slot = opened.sub, opened.slot
        if sub is None or slot is None:
            extra = []
            if opened.status == 401:
                extra.append((b"www-authenticate", _CHALLENGE[1].encode()))
            if opened.retry_after is not None:
                extra.append((b"retry-after", str(opened.retry_after).encode()))
            await _plain(send, opened.status, opened.message + "\n", extra)
            return
        try:
            await _serve(
                sub,
                receive,
                send,
                heartbeat=heartbeat,
                retry=retry,
                send_raises=_send_raises_when_gone(scope),
            )
        finally:
            slot.release()

    return app


async def _lifespan(receive: ASGIReceive, send: ASGISend, hub: Any | None) -> None:
    import asyncio  # noqa: PLC0415 - a WSGI host never loads it (tests/unit/test_handler_imports)

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if hub is not None:
                if getattr(hub, "fanout_mode", False):
                    # Here, in the loop's thread (the main one), before the hub starts: a
                    # hypercorn worker dies at the group's SIGTERM before this lifespan's
                    # shutdown unless the hub is stopped first.
                    from transflow.streaming.shutdown import (  # noqa: PLC0415
                        stop_hubs_at_unhandled_sigterm,
                    )

                    stop_hubs_at_unhandled_sigterm()
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


def _send_raises_when_gone(scope: ASGIScope) -> bool:
    """Whether the server raises an OSError from ``send`` once the client is gone (ASGI HTTP
    spec 2.4): then a write notices the disconnect and no task needs to watch ``receive``."""
    spec = str((scope.get("asgi") or {}).get("spec_version") or "2.0")
    try:
        major, minor = (int(part) for part in spec.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (2, 4)


# uvicorn's own send (httptools and h11) writes to the transport at once and awaits only
# while the transport's buffer is full: the loop's tick can run it to the end itself.
_WRITES_AT_ONCE = frozenset(
    {
        "uvicorn.protocols.http.httptools_impl.RequestResponseCycle",
        "uvicorn.protocols.http.h11_impl.RequestResponseCycle",
    }
)
_BEAT_BYTES = comment()


def _writes_at_once(send: ASGISend) -> bool:
    """Whether ``send`` is one the loop may run to the end without a task (a server listed
    in :data:`_WRITES_AT_ONCE`, not wrapped by middleware)."""
    return _flow_of(send) is not None


def _flow_of(send: ASGISend) -> Any:
    """For a ``send`` the loop may run itself, its flow control (``write_paused``: the
    socket's buffer is full, a write would wait); None for any other ``send``."""
    owner = getattr(send, "__self__", None)
    kind = type(owner)
    if (
        getattr(send, "__name__", "") != "send"
        or f"{kind.__module__}.{kind.__qualname__}" not in _WRITES_AT_ONCE
    ):
        return None
    flow = getattr(owner, "flow", None)
    return flow if hasattr(flow, "write_paused") else None


@attrs.define(eq=False)
class _LoopWriter:
    """The writes the loop makes itself for one stream, ``send`` driven by hand, one step
    (one small object per stream: its two methods are the stream's ``Beat.write`` and
    ``Subscription._direct``)."""

    send: ASGISend
    sub: Subscription
    flow: Any

    def events(self) -> bool:
        """What a dispatch's wake-up runs for the subscription: the events waiting, encoded
        and written in one ``send``; True when written and it waits again. False leaves it
        to the stream's task: a write that would wait (the client is not reading), an
        ended subscription, or events that came meanwhile."""
        sub = self.sub
        if self.flow.write_paused or sub.closed:
            return False
        taken = sub.take_ready(_BATCH)
        if not taken:
            return False
        if len(taken) == 1:  # the usual case: one event per stream per wake-up
            event, event_id = taken[0]
            body = _event_bytes(event, None, event_id) or b""
        else:
            chunks = [_event_bytes(event, None, event_id) for event, event_id in taken]
            body = b"".join([chunk for chunk in chunks if chunk is not None])
        if body:
            message = {"type": "http.response.body", "body": body, "more_body": True}
            step = cast("Coroutine[Any, Any, None]", self.send(message))
            try:
                waited_on = step.send(None)
            except StopIteration:
                pass
            except Exception:  # as when the stream's own write fails: the stream ends
                log.debug("SSE client of %s went away", sub.channel, exc_info=True)
                sub.close()
                return False
            else:  # it waited after all: the events are taken, so end the stream and let
                # the client resume from its Last-Event-ID rather than lose them silently
                _abandon(step, waited_on)
                log.warning("SSE: a write to %s would wait; the stream ends", sub.channel)
                sub.close()
                return False
            sub.mark_written()
        return sub._repark()

    def heartbeat(self) -> bool:
        """The tick's heartbeat write; skipped if it would wait (the client is not reading
        what is already queued: the connection is not idle). False once the stream ended."""
        if self.sub.closed:
            return False
        message = {"type": "http.response.body", "body": _BEAT_BYTES, "more_body": True}
        step = cast("Coroutine[Any, Any, None]", self.send(message))
        try:
            waited_on = step.send(None)
        except StopIteration:
            return True
        except BaseException:
            self.sub.close()  # as when the stream's own write fails: the stream ends
            raise
        _abandon(step, waited_on)
        return True


def _abandon(step: Coroutine[Any, Any, None], waited_on: object) -> None:
    """Close a send that began to wait. As a task would on resuming it, clear the flag
    asyncio set on the future it yielded: awaited again, that future would raise."""
    if getattr(waited_on, "_asyncio_future_blocking", False):
        waited_on._asyncio_future_blocking = False  # type: ignore[attr-defined]
    step.close()


async def _serve(
    sub: _Feed,
    receive: ASGIReceive,
    send: ASGISend,
    *,
    heartbeat: float,
    retry: int | None,
    send_raises: bool = False,
) -> None:
    # Imported here: only ASGI hosts get this far, and their loop has loaded asyncio.
    import asyncio  # noqa: PLC0415

    from transflow.streaming.fanout import Subscription  # noqa: PLC0415
    from transflow.streaming.waiters import Beat, waiters_of  # noqa: PLC0415

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        sub.close()  # wakes the stream, which then ends

    # A server of spec 2.4 raises from the next write (an event or a heartbeat) instead:
    # no second task per connection. Older ones (uvicorn 0.55, hypercorn 0.18 say 2.3 and
    # 2.1) return silently, so a task must watch receive() or the stream would outlive
    # its client.
    watcher = None if send_raises else asyncio.ensure_future(watch_disconnect())
    beat: Beat | None = None
    pending: Beat | None = None
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.lower().encode(), v.encode()) for k, v in HEADERS],
            }
        )
        loop = asyncio.get_running_loop()
        flow = _flow_of(send)
        writer = None
        if flow is not None and isinstance(sub, Subscription) and heartbeat < math.inf:
            # The loop writes this stream's heartbeats (its tick) and the events a dispatch
            # brings (its wake-up) itself; the stream's task wakes only when a write would
            # wait, and for the stream's end.
            writer = _LoopWriter(send, sub, flow)
            first = loop.time() + _first_beat(heartbeat)
            pending = Beat(waiters_of(loop), heartbeat, writer.heartbeat, first)
            stream_beat = math.inf
        else:
            stream_beat = heartbeat
        async for chunk in astream(sub, heartbeat=stream_beat, retry=retry):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if pending is not None:  # after the snapshot: the response has begun
                beat, pending = pending.start(), None
                if writer is not None:
                    writer.sub._direct = writer.events
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:  # the client went away mid-write (servers raise their own subclasses)
        log.debug("SSE client of %s went away", sub.channel)
    finally:
        if isinstance(sub, Subscription):
            sub._direct = None
        sub.close()
        if beat is not None:
            beat.cancel()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
