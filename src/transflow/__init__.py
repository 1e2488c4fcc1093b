"""transflow: serverless media-processing pipelines on AWS, with SQS as the only messaging.

The public API is re-exported here and nowhere else; the rooms (``ingest``, ``processing``,
``streaming``, ``ops``) are implementation homes. Names are imported on first use, so a Lambda
that does ``from transflow import GroupingBridge`` loads the ingest room and nothing else.
"""

from __future__ import annotations

import contextlib
import importlib
import types
from typing import TYPE_CHECKING, Any

from transflow import errors as _errors
from transflow._version import __version__ as __version__
from transflow.errors import *  # noqa: F403 - every error is public; errors.__all__ lists them

if TYPE_CHECKING:
    # _HOMES written out for type checkers, which cannot follow __getattr__;
    # tests/unit/test_facade.py checks that the two say the same. One import per module
    # (isort would split `X as X` imports into one statement each).
    # isort: off
    from transflow._aws.lambda_batch import LambdaContext as LambdaContext
    from transflow._aws.logs import configure_logging as configure_logging
    from transflow._aws.metering import (
        RequestCounter as RequestCounter,
        count_requests as count_requests,
    )
    from transflow._aws.poller import (
        Delivery as Delivery,
        PollerStats as PollerStats,
        QueuePoller as QueuePoller,
        backoff_visibility as backoff_visibility,
        current_delivery as current_delivery,
        poller_client_config as poller_client_config,
        release_immediately as release_immediately,
    )
    from transflow._aws.sqs_batch import (
        OutgoingMessage as OutgoingMessage,
        send_batch as send_batch,
    )
    from transflow._wire.channels import (
        branch_channel as branch_channel,
        channel_matches as channel_matches,
        upload_channel as upload_channel,
    )
    from transflow._wire.messages import ReceivedMessage as ReceivedMessage
    from transflow._wire.model import (
        ProcessingJob as ProcessingJob,
        ProgressEvent as ProgressEvent,
        ProgressType as ProgressType,
        S3ObjectRef as S3ObjectRef,
        UserContext as UserContext,
    )
    from transflow._wire.trace import TraceContext as TraceContext
    from transflow._wire.naming import (
        QueueNames as QueueNames,
        queue_names as queue_names,
        sanitize_branch as sanitize_branch,
    )
    from transflow._wire.tokens import (
        StreamGrant as StreamGrant,
        issue_stream_token as issue_stream_token,
        verify_stream_token as verify_stream_token,
    )
    from transflow.config import (
        SqsConfig as SqsConfig,
        TransflowConfig as TransflowConfig,
        load_config as load_config,
    )
    from transflow.ingest.bridge import (
        BridgeResponse as BridgeResponse,
        BridgeResult as BridgeResult,
        GroupingBridge as GroupingBridge,
        SentJob as SentJob,
        WaitingRecord as WaitingRecord,
    )
    from transflow.ingest.metadata import (
        UploadMetadata as UploadMetadata,
        read_upload_metadata as read_upload_metadata,
    )
    from transflow.ingest.s3events import (
        FailedRecord as FailedRecord,
        SkippedRecord as SkippedRecord,
    )
    from transflow.ingest.multipart import (
        MULTIPART_ACTIONS as MULTIPART_ACTIONS,
        MultipartEndpoint as MultipartEndpoint,
        MultipartReply as MultipartReply,
        MultipartStats as MultipartStats,
    )
    from transflow.ingest.uploads import (
        PresignedFile as PresignedFile,
        UploadFile as UploadFile,
        UploadTicket as UploadTicket,
        create_upload as create_upload,
    )
    from transflow.ops.provision import (
        EnsureReport as EnsureReport,
        QueueUrls as QueueUrls,
        ensure_queues as ensure_queues,
        ensure_queues_report as ensure_queues_report,
        resolve_queue_urls as resolve_queue_urls,
    )
    from transflow.ops.queue_spec import AttributeChange as AttributeChange
    from transflow.processing.cancellation import (
        CancelOutcome as CancelOutcome,
        CancelResult as CancelResult,
        cancel_upload as cancel_upload,
    )
    from transflow.processing.context import (
        InputFile as InputFile,
        OutputFile as OutputFile,
        OutputLocation as OutputLocation,
        StepContext as StepContext,
    )
    from transflow.processing.destination import (
        ProgressDestination as ProgressDestination,
        ProgressQueue as ProgressQueue,
        ProgressTopic as ProgressTopic,
    )
    from transflow.processing.processor import JobProcessor as JobProcessor
    from transflow.processing.progress import (
        ProgressPublisher as ProgressPublisher,
        ProgressStream as ProgressStream,
    )
    from transflow.processing.retries import StepRetry as StepRetry
    from transflow.processing.status import AssemblyStatus as AssemblyStatus
    from transflow.processing.templates import (
        Template as Template,
        TemplateRegistry as TemplateRegistry,
    )
    from transflow.processing.webhooks import WebhookSender as WebhookSender
    from transflow.processing.worker import make_worker as make_worker, run_worker as run_worker
    from transflow.streaming.apps import asgi_app as asgi_app, wsgi_app as wsgi_app
    from transflow.streaming.cancel import cancel_request as cancel_request
    from transflow.streaming.fanout import Subscription as Subscription
    from transflow.streaming.hub import HubStats as HubStats, ProgressHub as ProgressHub
    from transflow.streaming.latency import Quantiles as Quantiles
    from transflow.streaming.snapshot import (
        UploadState as UploadState,
        UploadStatus as UploadStatus,
    )
    from transflow.streaming import sse as sse
    from transflow.streaming.limits import (
        StreamLimits as StreamLimits,
        StreamLimitStats as StreamLimitStats,
    )
    from transflow.web.assets import (
        WEB_ASSETS as WEB_ASSETS,
        WebAsset as WebAsset,
        web_asset as web_asset,
        web_static_dir as web_static_dir,
    )
    # isort: on

# Where each lazily imported public name lives: the one list of the public API besides
# errors.__all__ (__all__ is derived from both).
_HOMES: dict[str, str] = {
    "LambdaContext": "transflow._aws.lambda_batch",
    "configure_logging": "transflow._aws.logs",
    "RequestCounter": "transflow._aws.metering",
    "count_requests": "transflow._aws.metering",
    "Delivery": "transflow._aws.poller",
    "PollerStats": "transflow._aws.poller",
    "QueuePoller": "transflow._aws.poller",
    "backoff_visibility": "transflow._aws.poller",
    "current_delivery": "transflow._aws.poller",
    "poller_client_config": "transflow._aws.poller",
    "release_immediately": "transflow._aws.poller",
    "OutgoingMessage": "transflow._aws.sqs_batch",
    "send_batch": "transflow._aws.sqs_batch",
    "branch_channel": "transflow._wire.channels",
    "channel_matches": "transflow._wire.channels",
    "upload_channel": "transflow._wire.channels",
    "ReceivedMessage": "transflow._wire.messages",
    "ProcessingJob": "transflow._wire.model",
    "ProgressEvent": "transflow._wire.model",
    "ProgressType": "transflow._wire.model",
    "S3ObjectRef": "transflow._wire.model",
    "UserContext": "transflow._wire.model",
    "TraceContext": "transflow._wire.trace",
    "QueueNames": "transflow._wire.naming",
    "queue_names": "transflow._wire.naming",
    "sanitize_branch": "transflow._wire.naming",
    "StreamGrant": "transflow._wire.tokens",
    "issue_stream_token": "transflow._wire.tokens",
    "verify_stream_token": "transflow._wire.tokens",
    "SqsConfig": "transflow.config",
    "TransflowConfig": "transflow.config",
    "load_config": "transflow.config",
    "BridgeResponse": "transflow.ingest.bridge",
    "BridgeResult": "transflow.ingest.bridge",
    "GroupingBridge": "transflow.ingest.bridge",
    "SentJob": "transflow.ingest.bridge",
    "WaitingRecord": "transflow.ingest.bridge",
    "UploadMetadata": "transflow.ingest.metadata",
    "read_upload_metadata": "transflow.ingest.metadata",
    "FailedRecord": "transflow.ingest.s3events",
    "SkippedRecord": "transflow.ingest.s3events",
    "MULTIPART_ACTIONS": "transflow.ingest.multipart",
    "MultipartEndpoint": "transflow.ingest.multipart",
    "MultipartReply": "transflow.ingest.multipart",
    "MultipartStats": "transflow.ingest.multipart",
    "PresignedFile": "transflow.ingest.uploads",
    "UploadFile": "transflow.ingest.uploads",
    "UploadTicket": "transflow.ingest.uploads",
    "create_upload": "transflow.ingest.uploads",
    "EnsureReport": "transflow.ops.provision",
    "QueueUrls": "transflow.ops.provision",
    "ensure_queues": "transflow.ops.provision",
    "ensure_queues_report": "transflow.ops.provision",
    "resolve_queue_urls": "transflow.ops.provision",
    "AttributeChange": "transflow.ops.queue_spec",
    "InputFile": "transflow.processing.context",
    "CancelOutcome": "transflow.processing.cancellation",
    "CancelResult": "transflow.processing.cancellation",
    "cancel_upload": "transflow.processing.cancellation",
    "OutputFile": "transflow.processing.context",
    "OutputLocation": "transflow.processing.context",
    "StepContext": "transflow.processing.context",
    "ProgressDestination": "transflow.processing.destination",
    "ProgressQueue": "transflow.processing.destination",
    "ProgressTopic": "transflow.processing.destination",
    "JobProcessor": "transflow.processing.processor",
    "ProgressPublisher": "transflow.processing.progress",
    "ProgressStream": "transflow.processing.progress",
    "StepRetry": "transflow.processing.retries",
    "AssemblyStatus": "transflow.processing.status",
    "Template": "transflow.processing.templates",
    "TemplateRegistry": "transflow.processing.templates",
    "WebhookSender": "transflow.processing.webhooks",
    "make_worker": "transflow.processing.worker",
    "run_worker": "transflow.processing.worker",
    "asgi_app": "transflow.streaming.apps",
    "wsgi_app": "transflow.streaming.apps",
    "cancel_request": "transflow.streaming.cancel",
    "Subscription": "transflow.streaming.fanout",
    "HubStats": "transflow.streaming.hub",
    "ProgressHub": "transflow.streaming.hub",
    "Quantiles": "transflow.streaming.latency",
    "StreamLimits": "transflow.streaming.limits",
    "StreamLimitStats": "transflow.streaming.limits",
    "UploadState": "transflow.streaming.snapshot",
    "UploadStatus": "transflow.streaming.snapshot",
    "WEB_ASSETS": "transflow.web.assets",
    "WebAsset": "transflow.web.assets",
    "web_asset": "transflow.web.assets",
    "web_static_dir": "transflow.web.assets",
}

# Modules used as namespaces by host code (``sse.stream``, ``sse.bearer_token``).
_MODULES: dict[str, str] = {"sse": "transflow.streaming.sse"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(_MODULES[name])
        globals()[name] = module
        return module
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'transflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    _claim(value)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def _claim(value: Any) -> None:
    """Make a public class or function say it is ``transflow.X`` (in reprs, tracebacks and
    pickles), as httpx does: where it is implemented is not part of the API.

    Pickle finds it again through this module's ``__getattr__``. An attrs class's string
    annotations are resolved first, in its home module's namespace: cattrs resolves them
    later through ``__module__``, which no longer names that namespace.
    """
    if not isinstance(value, (type, types.FunctionType)) or value.__module__ == __name__:
        return
    if isinstance(value, type):
        import attrs  # noqa: PLC0415 - the rooms load it anyway; `import transflow` must not

        if attrs.has(value):
            # A NameError is an annotation for type checkers only: nothing at run time reads it.
            with contextlib.suppress(NameError):
                attrs.resolve_types(value)
    value.__module__ = __name__


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_MODULES))


if not TYPE_CHECKING:
    # Derived, never written out. Hidden from type checkers: mypy reads a computed __all__
    # as "export nothing"; it takes the `X as X` imports above and the star import instead.
    __all__ = sorted(["__version__", *_errors.__all__, *_HOMES])  # noqa: PLE0605
