"""Multipart uploads in a Flask app: the create-upload endpoint and the four multipart
endpoints the browser client calls (``{base}/sign-parts``, ``list-parts``, ``complete``,
``abort``), all JSON. Copy ``create_app``; ``MultipartEndpoint.handle`` does the checking.

    python -m examples.multipart_flask   # needs the dev extra (flask) and the local extra
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from examples._multipart_demo import BUCKET, MIB, make_bucket, upload_big_file
from transflow import MULTIPART_ACTIONS, MultipartEndpoint, UploadFile, create_upload
from transflow.cli.local import LocalAws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def create_app(s3: S3Client, stream_secret: str) -> Flask:
    """``s3`` signs with SigV4 as the uploads role; ``stream_secret`` is
    ``load_config().stream_secret`` (TRANSFLOW_STREAM_SECRET)."""
    app = Flask(__name__)
    limits: dict[str, Any] = {"max_file_size": 10 * 1024**3, "part_size": 5 * MIB}
    multipart = MultipartEndpoint(s3, BUCKET, secret=stream_secret, **limits)

    @app.post("/api/uploads")
    def new_upload() -> Response:
        asked = request.get_json(force=True)
        ticket = create_upload(
            s3,
            bucket=BUCKET,
            branch="main",
            template_id="video",
            files=[UploadFile(str(asked["name"]), asked.get("type"), asked.get("size"))],
            stream_secret=stream_secret,
            multipart_threshold=10 * MIB,  # the default is 100 MiB
            **limits,
        )
        return jsonify(ticket.to_dict())

    @app.post("/api/multipart/<action>")
    def multipart_action(action: str) -> tuple[Response, int]:
        if action not in MULTIPART_ACTIONS:
            return jsonify({"error": "not found"}), 404
        reply = multipart.handle(
            action,
            request.get_data(),
            authorization=request.headers.get("Authorization"),
            request=request,  # what an authorize= hook would be given
        )
        return jsonify(dict(reply.body)), reply.status

    return app


def main() -> dict[str, Any]:
    with LocalAws() as aws:
        s3 = aws.s3(Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        make_bucket(s3)
        app = create_app(s3, secrets.token_urlsafe(32))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            done = upload_big_file(f"http://127.0.0.1:{server.server_port}")
        finally:
            server.shutdown()
    print(f"uploaded {done['key']}: {done['size']} bytes")
    return done


if __name__ == "__main__":
    main()
