"""Live upload progress in a Flask app, over Server-Sent Events.

One ProgressHub per process consumes the progress queue; each browser subscribes to its
upload's channel. Two ways to serve it are shown: a Flask view around ``sse.stream``
(your routing, your auth), and the ready WSGI app mounted under ``/events``.

    python -m examples.sse_flask      # needs the dev extra (flask) and the local extra
"""

from __future__ import annotations

import threading

from flask import Flask, Response, abort, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from examples._sse_demo import demo_events, progress_queue, publish, read_until_done
from transflow import ProgressHub, SubscriptionDenied, poller_client_config, sse, upload_channel
from transflow.cli.local import LocalAws


def create_app(hub: ProgressHub) -> Flask:
    app = Flask(__name__)

    @app.get("/progress/<branch>/<upload_id>")
    def progress(branch: str, upload_id: str) -> Response:
        try:
            subscription = hub.subscribe(
                upload_channel(branch, upload_id),
                request.headers.get("Last-Event-ID"),  # the browser sends it on reconnect
                principal=request,
            )
        except SubscriptionDenied:
            abort(403)
        # Flask streams a generator as it yields; closing it (client gone) unsubscribes.
        return Response(sse.stream(subscription), headers=list(sse.HEADERS))

    # The ready app: GET /events/?channel=upload:main:abc or /events/?branch=main
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/events": sse.wsgi_app(hub)}
    )
    return app


def main() -> list[tuple[str, str]]:
    with LocalAws() as aws:
        sqs = aws.sqs(poller_client_config())  # pool sized so heartbeats never wait
        url = progress_queue(sqs)
        with ProgressHub(sqs, url, wait_time_seconds=1) as hub:
            server = make_server("127.0.0.1", 0, create_app(hub), threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                base = f"http://127.0.0.1:{server.server_port}"
                reader: list[list[tuple[str, str]]] = []
                client = threading.Thread(
                    target=lambda: reader.append(
                        read_until_done(f"{base}/progress/main/upload-abc")
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
