"""Multipart uploads in a Starlette (or FastAPI) app: the create-upload endpoint and the
four multipart endpoints the browser client calls, all JSON. ``MultipartEndpoint`` talks to
S3 with a blocking client, so the routes run it in Starlette's thread pool.

    python -m examples.multipart_starlette  # needs the dev extra (starlette, uvicorn), local
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from botocore.config import Config
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples._multipart_demo import BUCKET, MIB, make_bucket, upload_big_file
from transflow import MULTIPART_ACTIONS, MultipartEndpoint, UploadFile, create_upload
from transflow.cli.local import LocalAws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def create_app(s3: S3Client, stream_secret: str) -> Starlette:
    """``s3`` signs with SigV4 as the uploads role; ``stream_secret`` is
    ``load_config().stream_secret`` (TRANSFLOW_STREAM_SECRET)."""
    limits: dict[str, Any] = {"max_file_size": 10 * 1024**3, "part_size": 5 * MIB}
    multipart = MultipartEndpoint(s3, BUCKET, secret=stream_secret, **limits)

    async def new_upload(request: Request) -> JSONResponse:
        asked = await request.json()
        ticket = await run_in_threadpool(
            lambda: create_upload(
                s3,
                bucket=BUCKET,
                branch="main",
                template_id="video",
                files=[UploadFile(str(asked["name"]), asked.get("type"), asked.get("size"))],
                stream_secret=stream_secret,
                multipart_threshold=10 * MIB,  # the default is 100 MiB
                **limits,
            )
        )
        return JSONResponse(ticket.to_dict())

    async def multipart_action(request: Request) -> JSONResponse:
        action = request.path_params["action"]
        if action not in MULTIPART_ACTIONS:
            return JSONResponse({"error": "not found"}, status_code=404)
        body = await request.body()
        reply = await run_in_threadpool(
            multipart.handle,
            action,
            body,
            authorization=request.headers.get("authorization"),
            request=request,
        )
        return JSONResponse(dict(reply.body), status_code=reply.status)

    return Starlette(
        routes=[
            Route("/api/uploads", new_upload, methods=["POST"]),
            Route("/api/multipart/{action}", multipart_action, methods=["POST"]),
        ]
    )


def main() -> dict[str, Any]:
    with LocalAws() as aws:
        s3 = aws.s3(Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        make_bucket(s3)
        app = create_app(s3, secrets.token_urlsafe(32))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            done = upload_big_file(f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(f"uploaded {done['key']}: {done['size']} bytes")
    return done


if __name__ == "__main__":
    main()
