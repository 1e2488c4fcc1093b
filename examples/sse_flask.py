"""Live upload progress in a Flask app, over Server-Sent Events.

One ProgressHub per process consumes the progress queue; each browser subscribes to its
upload's channel with the stream token ``create_upload`` put on its ticket. Two ways to
serve it are shown: a Flask view around ``sse.stream`` (your routing, checking the token
itself), and the ready WSGI app ``wsgi_app`` mounted under ``/events`` (which checks it for
you).

    python -m examples.sse_flask      # needs the dev extra (flask) and the local extra
"""

from __future__ import annotations

import secrets
import threading

from flask import Flask, Response, abort, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from examples._sse_demo import demo_events, progress_queue, publish, read_until_done
from transflow import (
    ProgressHub,
    ProgressQueue,
    StreamTokenError,
    SubscriptionDeniedError,
    issue_stream_token,
    poller_client_config,
    sse,
    upload_channel,
    verify_stream_token,
    wsgi_app,
)
from transflow.cli.local import LocalAws


def create_app(hub: ProgressHub, stream_secret: str) -> Flask:
    """``stream_secret`` is ``load_config().stream_secret`` (TRANSFLOW_STREAM_SECRET), the one
    your create-upload endpoint passes to ``create_upload``."""
    app = Flask(__name__)

    @app.get("/progress/<branch>/<upload_id>")
    def progress(branch: str, upload_id: str) -> Response:
        channel = upload_channel(branch, upload_id)
        token = sse.bearer_token(request.headers.get("Authorization"), request.args.to_dict(False))
        try:
            if not verify_stream_token(stream_secret, token).allows(channel):
                abort(403)
        except StreamTokenError:
            abort(401)
        try:
            subscription = hub.subscribe(
                channel,
                request.headers.get("Last-Event-ID"),  # the browser sends it on reconnect
                principal=request,
            )
        except SubscriptionDeniedError:
            abort(403)
        # Flask streams a generator as it yields; closing it (client gone) unsubscribes.
        return Response(sse.stream(subscription), headers=list(sse.HEADERS))

    # The ready app: GET /events/?channel=upload:main:abc&token=… (a whole branch,
    # ?branch=main, needs an operator token for upload:main:*).
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/events": wsgi_app(hub, secret=stream_secret)}
    )
    return app


def main() -> list[tuple[str, str]]:
    with LocalAws() as aws:
        sqs = aws.sqs(poller_client_config())  # pool sized so heartbeats never wait
        url = progress_queue(sqs)
        stream_secret = secrets.token_urlsafe(32)  # in production: TRANSFLOW_STREAM_SECRET
        # What create_upload(..., stream_secret=...) returns as ticket.stream_token:
        token = issue_stream_token(stream_secret, upload_channel("main", "upload-abc"))
        with ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1) as hub:
            server = make_server("127.0.0.1", 0, create_app(hub, stream_secret), threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                base = f"http://127.0.0.1:{server.server_port}"
                reader: list[list[tuple[str, str]]] = []
                client = threading.Thread(
                    target=lambda: reader.append(
                        read_until_done(f"{base}/progress/main/upload-abc?token={token}")
                    )
                )
                client.start()
                publish(sqs, url, demo_events("main", "upload-abc"))
                client.join(timeout=30)
            finally:
                server.shutdown()
    received = reader[0] if reader else []
    for kind, data in received:
        print(f"{kind}: {data}")
    return received


if __name__ == "__main__":
    main()
