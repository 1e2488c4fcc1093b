"""Live upload progress in a Starlette (or FastAPI) app, over Server-Sent Events.

The hub starts and stops with the app's lifespan. A route wraps ``transflow.streaming.sse.astream``
(which waits on the event loop, not in a thread) and checks the upload's stream token itself;
the ready ASGI app ``asgi_app``, mounted under ``/events``, checks it for you.

    python -m examples.sse_starlette  # needs the dev extra (starlette, uvicorn) and local
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from examples._sse_demo import demo_events, progress_queue, publish, read_until_done
from transflow import (
    ProgressHub,
    ProgressQueue,
    StreamTokenError,
    SubscriptionDeniedError,
    asgi_app,
    issue_stream_token,
    poller_client_config,
    sse,
    upload_channel,
    verify_stream_token,
)
from transflow.cli.local import LocalAws


def create_app(hub: ProgressHub, stream_secret: str) -> Starlette:
    """``stream_secret`` is ``load_config().stream_secret`` (TRANSFLOW_STREAM_SECRET), the one
    your create-upload endpoint passes to ``create_upload``."""

    async def progress(request: Request) -> Response:
        channel = upload_channel(request.path_params["branch"], request.path_params["upload_id"])
        query = {k: request.query_params.getlist(k) for k in request.query_params}
        token = sse.bearer_token(request.headers.get("authorization"), query)
        try:
            if not verify_stream_token(stream_secret, token).allows(channel):
                return PlainTextResponse("forbidden", status_code=403)
        except StreamTokenError as exc:
            return PlainTextResponse(str(exc), status_code=401)
        try:
            subscription = hub.subscribe(
                channel,
                request.headers.get("last-event-id"),
                principal=request,
            )
        except SubscriptionDeniedError:
            return PlainTextResponse("forbidden", status_code=403)
        return StreamingResponse(sse.astream(subscription), headers=dict(sse.HEADERS))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            hub.stop()

    return Starlette(
        routes=[
            Route("/progress/{branch}/{upload_id}", progress),
            Mount("/events", app=asgi_app(hub, secret=stream_secret)),
        ],
        lifespan=lifespan,
    )


def main() -> list[tuple[str, str]]:
    with LocalAws() as aws:
        sqs = aws.sqs(poller_client_config())
        url = progress_queue(sqs)
        hub = ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1)
        stream_secret = secrets.token_urlsafe(32)  # in production: TRANSFLOW_STREAM_SECRET
        # What create_upload(..., stream_secret=...) returns as ticket.stream_token:
        token = issue_stream_token(stream_secret, upload_channel("main", "upload-abc"))
        app = create_app(hub, stream_secret)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            reader: list[list[tuple[str, str]]] = []
            client = threading.Thread(
                target=lambda: reader.append(
                    read_until_done(
                        f"http://127.0.0.1:{port}/events/?channel=upload:main:upload-abc"
                        f"&token={token}"
                    )
                )
            )
            client.start()
            publish(sqs, url, demo_events("main", "upload-abc"))
            client.join(timeout=30)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    received = reader[0] if reader else []
    for kind, data in received:
        print(f"{kind}: {data}")
    return received


if __name__ == "__main__":
    main()
