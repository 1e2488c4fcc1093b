"""The whole pipeline in one process, for ``transflow demo`` and ``transflow dev``.

An embedded SQS/S3 endpoint (moto's server; or any endpoint given, LocalStack or AWS),
the buckets, the three FIFO queues from :func:`ensure_queues`, a standard queue that S3
notifies, and running on threads: the grouping bridge (a poller on the notification queue),
a worker (the job processor behind a poller), the progress hub, and an HTTP server with the
SSE endpoint, a create-upload endpoint and the dev page.

HTTP routes (all JSON unless said):

- ``GET /`` the dev page (HTML); ``GET /app.js`` its script, which imports the browser
  client the package ships, ``GET /transflow.js`` (and ``/transflow.d.ts``, its types)
- ``POST /api/uploads`` ``{"templateId", "files": [{"name", "type", "size"}]}`` → upload ticket
- ``GET /api/uploads/{uploadId}`` the status record and presigned links to the outputs
- ``POST /api/multipart/{sign-parts,list-parts,complete,abort}`` the multipart protocol of
  :class:`transflow.MultipartEndpoint` (``Authorization: Bearer`` the ticket's streamToken)
- ``GET /events?channel=…&token=…`` Server-Sent Events (``wsgi_app``); the token is
  the ticket's ``streamToken`` (signed with a secret made at start, or ``TRANSFLOW_STREAM_SECRET``)
"""

from __future__ import annotations

import http
import json
import logging
import os
import secrets
import socketserver
import threading
from collections.abc import Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import attrs
import boto3
from botocore.config import Config

from transflow._aws.metering import RequestCounter
from transflow._aws.poller import QueuePoller, poller_client_config
from transflow._wire.keys import status_key
from transflow._wire.messages import ReceivedMessage
from transflow._wire.tokens import ENV_STREAM_SECRET
from transflow.cli.demo.templates import FailurePlan, demo_registry
from transflow.cli.local import LocalAws
from transflow.config import SqsConfig, TransflowConfig
from transflow.errors import BridgeError, TransflowError
from transflow.ingest.bridge import GroupingBridge
from transflow.ingest.multipart import MULTIPART_ACTIONS, MultipartEndpoint
from transflow.ingest.uploads import UploadFile, create_upload
from transflow.ops.provision import QueueUrls, ensure_queues
from transflow.processing.destination import ProgressQueue
from transflow.processing.processor import JobProcessor
from transflow.processing.storage import read_status_record
from transflow.processing.worker import make_worker
from transflow.streaming.apps import wsgi_app
from transflow.streaming.hub import ProgressHub
from transflow.web.assets import WEB_ASSETS, web_asset

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = ["DemoSettings", "DemoStack"]

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@attrs.frozen
class DemoSettings:
    """What the demo stack runs with. ``endpoint_url=None`` starts an embedded endpoint."""

    project: str = "transflow-demo"
    branch: str = "main"
    upload_bucket: str = "transflow-demo-uploads"
    output_bucket: str = "transflow-demo-outputs"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    fail_rate: float = 0.0
    concurrency: int = 4
    max_receive_count: int = 2
    poll_wait: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 0
    max_file_size: int = 50 * 1024 * 1024
    # Low, so the dev page shows parts with files of a few tens of MiB.
    multipart_threshold: int = 10 * 1024 * 1024
    part_size: int = 5 * 1024 * 1024


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # an open SSE stream must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


@attrs.define
class DemoStack:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`."""

    settings: DemoSettings = attrs.field(factory=DemoSettings)
    requests: RequestCounter = attrs.field(factory=RequestCounter)
    failures: FailurePlan = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: FailurePlan(self.settings.fail_rate), takes_self=True),
    )
    urls: QueueUrls | None = attrs.field(default=None, init=False)
    events_queue_url: str | None = attrs.field(default=None, init=False)
    _local: LocalAws | None = attrs.field(default=None, init=False)
    _endpoint: str | None = attrs.field(default=None, init=False)
    _sqs: SQSClient | None = attrs.field(default=None, init=False)
    _s3: S3Client | None = attrs.field(default=None, init=False)
    _running: list[QueuePoller | ProgressHub] = attrs.field(factory=list, init=False)
    _hub: ProgressHub | None = attrs.field(default=None, init=False)
    _http: WSGIServer | None = attrs.field(default=None, init=False)
    _http_thread: threading.Thread | None = attrs.field(default=None, init=False)
    _multipart: MultipartEndpoint | None = attrs.field(default=None, init=False)
    # Signs the stream tokens of the demo's uploads; random per run unless the environment
    # gives one (so a host running several stacks can share it).
    stream_secret: str = attrs.field(
        factory=lambda: os.environ.get(ENV_STREAM_SECRET) or secrets.token_urlsafe(32),
        init=False,
        repr=False,
    )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> DemoStack:
        """Provision everything and start the bridge, the worker, the hub and HTTP."""
        s = self.settings
        if s.endpoint_url is None:
            self._local = LocalAws(region=s.region).start()
            # moto keeps its state per process, not per server: start from nothing.
            self._local.reset()
            self._endpoint = self._local.endpoint_url
        else:
            self._endpoint = s.endpoint_url
        session = self._session()
        sqs = session.client(
            "sqs",
            endpoint_url=self._endpoint,
            config=poller_client_config(s.concurrency + 12),
        )
        s3 = session.client(
            "s3",
            endpoint_url=self._endpoint,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"mode": "standard"},
                max_pool_connections=32,
            ),
        )
        self.requests.attach(sqs)
        self.requests.attach(s3)
        self._sqs, self._s3 = sqs, s3
        self._provision(sqs, s3)
        assert self.urls is not None
        assert self.events_queue_url is not None

        bridge = GroupingBridge(
            sqs,
            s3,
            queue_url=self.urls.processing,
            upload_bucket=s.upload_bucket,
            default_branch=s.branch,
        )
        processor = JobProcessor(
            demo_registry(output_bucket=s.output_bucket, failures=self.failures),
            s3_client=s3,
            sqs_client=sqs,
            progress=ProgressQueue(self.urls.progress),
            max_receive_count=s.max_receive_count,
            flush_after=0.1,
            upload_bucket=s.upload_bucket,
        )
        bridge_poller = QueuePoller(
            sqs,
            self.events_queue_url,
            _bridge_handler(bridge),
            concurrency=4,
            wait_time_seconds=s.poll_wait,
            retry_delay=lambda _message: 1,
            name="transflow-demo-bridge",
        )
        worker = make_worker(
            processor,
            sqs,
            self.urls.processing,
            concurrency=s.concurrency,
            wait_time_seconds=s.poll_wait,
            retry_delay=lambda _message: 0,  # the demo shows retries now, not in a minute
            drain_timeout=10,
        )
        hub = ProgressHub(sqs, ProgressQueue(self.urls.progress), wait_time_seconds=s.poll_wait)
        self._hub = hub
        for part in (hub, worker, bridge_poller):
            part.start()
            self._running.append(part)
        self.multipart()  # made before HTTP serves, so no two requests race to make it
        self._serve_http(hub)
        return self

    def stop(self) -> None:
        """Stop HTTP, the pollers and the hub, then the embedded endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for part in reversed(self._running):
            part.stop()
        self._running.clear()
        self.requests.detach()
        if self._local is not None:
            self._local.stop()
            self._local = None

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what the demo and the page use --------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """The SQS/S3 endpoint in use."""
        if self._endpoint is None:
            raise TransflowError("the demo stack is not started")
        return self._endpoint

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:{port}``: the page, the API and the SSE endpoint."""
        if self._http is None:
            raise TransflowError("the demo stack is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def sqs(self) -> SQSClient:
        """The stack's SQS client (its requests are counted)."""
        if self._sqs is None:
            raise TransflowError("the demo stack is not started")
        return self._sqs

    @property
    def s3(self) -> S3Client:
        """The stack's S3 client (its requests are counted)."""
        if self._s3 is None:
            raise TransflowError("the demo stack is not started")
        return self._s3

    def dead_lettered(self) -> int:
        """Messages in the dead-letter queue now."""
        assert self.urls is not None
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.urls.dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", "0"))

    def upload_report(self, upload_id: str) -> dict[str, Any]:
        """The status record of an upload and a presigned link to each output."""
        record = read_status_record(
            self.s3, self.settings.output_bucket, status_key(self.settings.branch, upload_id)
        )
        if record is None:
            return {"uploadId": upload_id, "state": "unknown", "outputs": []}
        outputs = []
        for step, results in record.results.items():
            for result in results:
                outputs.append(
                    {
                        "step": step,
                        "name": result.name,
                        "key": result.key,
                        "bytes": result.size,
                        "url": self.s3.generate_presigned_url(
                            "get_object",
                            Params={"Bucket": result.bucket, "Key": result.key},
                            ExpiresIn=3600,
                        ),
                    }
                )
        state = "completed" if record.completed else ("error" if record.error else "processing")
        return {
            "uploadId": upload_id,
            "state": state,
            "error": record.error,
            "message": record.message,
            "outputs": outputs,
        }

    # -- internals -----------------------------------------------------------------------

    def multipart(self) -> MultipartEndpoint:
        """The multipart endpoints of the upload bucket, with the stack's limits (one for
        the stack's life, so its ``stats()`` add up)."""
        if self._multipart is None:
            s = self.settings
            self._multipart = MultipartEndpoint(
                self.s3,
                s.upload_bucket,
                secret=self.stream_secret,
                max_file_size=s.max_file_size,
                part_size=s.part_size,
            )
        return self._multipart

    def _session(self) -> boto3.session.Session:
        if self._local is not None:
            return self._local.session()
        return boto3.session.Session(region_name=self.settings.region)

    def _provision(self, sqs: SQSClient, s3: S3Client) -> None:
        s = self.settings
        for bucket in (s.upload_bucket, s.output_bucket):
            _ensure_bucket(s3, bucket, s.region)
        # Browsers POST files (and PUT parts, reading each part's ETag) straight to the
        # bucket from the dev page's origin.
        s3.put_bucket_cors(
            Bucket=s.upload_bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedMethods": ["POST", "PUT", "GET"],
                        "AllowedOrigins": ["*"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                    }
                ]
            },
        )
        config = TransflowConfig(
            project=s.project,
            branch=s.branch,
            region=s.region,
            sqs=SqsConfig(max_receive_count=s.max_receive_count, visibility_timeout_sec=60),
        )
        self.urls = ensure_queues(sqs, config)
        # S3 cannot notify a FIFO queue: it notifies a standard queue the bridge drains.
        events_name = f"{s.project}-{s.branch}-s3-events"
        events_url = sqs.create_queue(QueueName=events_name)["QueueUrl"]
        events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=s.upload_bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": events_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}
                        },
                    }
                ]
            },
        )
        self.events_queue_url = events_url

    def _serve_http(self, hub: ProgressHub) -> None:
        s = self.settings
        app = _router(self, wsgi_app(hub, secret=self.stream_secret, retry=1000))
        server = make_server(
            s.http_host,
            s.http_port,
            app,
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._http = server
        self._http_thread = threading.Thread(
            target=server.serve_forever, name="transflow-demo-http", daemon=True
        )
        self._http_thread.start()


def _ensure_bucket(s3: S3Client, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )


def _bridge_handler(bridge: GroupingBridge) -> Callable[[ReceivedMessage], None]:
    """One notification-queue message through the bridge, as Lambda would hand it over."""

    def handle(message: ReceivedMessage) -> None:
        record = {
            "messageId": message.message_id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": dict(message.attributes),
            "eventSource": "aws:sqs",
        }
        result = bridge.handle({"Records": [record]})
        if result.failed_message_ids():
            raise BridgeError(f"the bridge could not enqueue message {message.message_id}", result)

    return handle


# -- HTTP ---------------------------------------------------------------------------------


def _json_response(start_response: Callable[..., Any], status: str, data: object) -> list[bytes]:
    body = json.dumps(data).encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


def _static(name: str, content_type: str) -> tuple[bytes, str]:
    if name in WEB_ASSETS:  # the browser client the package ships, which the page imports
        asset = web_asset(name)
        return asset.body, asset.content_type
    data = resources.files("transflow.cli.demo").joinpath("static").joinpath(name).read_bytes()
    return data, content_type


_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    **{f"/{name}": (name, "") for name in WEB_ASSETS},
}


def _router(stack: DemoStack, events: WsgiApp) -> WsgiApp:
    def app(  # noqa: PLR0911 - one return per route reads best
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/events":
                return events(environ, start_response)
            if path in _STATIC and method == "GET":
                data, kind = _static(*_STATIC[path])
                start_response(
                    "200 OK", [("Content-Type", kind), ("Content-Length", str(len(data)))]
                )
                return [data]
            if path == "/api/uploads" and method == "POST":
                return _create_upload(stack, environ, start_response)
            if path.startswith("/api/multipart/") and method == "POST":
                return _multipart(
                    stack, path.removeprefix("/api/multipart/"), environ, start_response
                )
            if path.startswith("/api/uploads/") and method == "GET":
                upload_id = path.removeprefix("/api/uploads/")
                return _json_response(start_response, "200 OK", stack.upload_report(upload_id))
            return _json_response(start_response, "404 Not Found", {"error": "not found"})
        except TransflowError as exc:
            return _json_response(start_response, "400 Bad Request", {"error": str(exc)})

    return app


def _create_upload(
    stack: DemoStack, environ: dict[str, Any], start_response: Callable[..., Any]
) -> list[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(min(length, 1_000_000)) or b"{}")
        files = [
            UploadFile(str(f["name"]), f.get("type") or None, f.get("size"))
            for f in request["files"]
        ]
        template_id = str(request["templateId"])
    except (ValueError, KeyError, TypeError) as exc:
        return _json_response(
            start_response,
            "400 Bad Request",
            {"error": f"expected {{'templateId', 'files': [{{'name', 'type', 'size'}}]}}: {exc}"},
        )
    s = stack.settings
    ticket = create_upload(
        stack.s3,
        bucket=s.upload_bucket,
        branch=s.branch,
        template_id=template_id,
        files=files,
        max_file_size=s.max_file_size,
        stream_secret=stack.stream_secret,
        multipart_threshold=s.multipart_threshold,
        part_size=s.part_size,
    )
    stack.failures.choose(ticket.upload_id)
    return _json_response(start_response, "200 OK", ticket.to_dict())


def _multipart(
    stack: DemoStack, action: str, environ: dict[str, Any], start_response: Callable[..., Any]
) -> list[bytes]:
    if action not in MULTIPART_ACTIONS:
        return _json_response(start_response, "404 Not Found", {"error": "not found"})
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(min(length, 1_000_000)) if length > 0 else b""
    reply = stack.multipart().handle(
        action, body, authorization=environ.get("HTTP_AUTHORIZATION"), request=environ
    )
    status = f"{reply.status} {http.HTTPStatus(reply.status).phrase}"
    return _json_response(start_response, status, dict(reply.body))
