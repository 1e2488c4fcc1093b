"""transflow: serverless media-processing pipelines on AWS, with SQS as the only messaging.

The public API is re-exported here and nowhere else; the rooms (``ingest``, ``processing``,
``streaming``, ``ops``) are implementation homes. Names are imported on first use, so a Lambda
that does ``from transflow import GroupingBridge`` loads the ingest room and nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transflow._version import __version__
from transflow.errors import (
    BatchFailedError,
    BridgeError,
    ChannelError,
    CommandError,
    CommandFailedError,
    CommandNotFoundError,
    CommandTimeoutError,
    ConfigError,
    ConfirmationRequiredError,
    DuplicateTemplateError,
    EmptyTemplateError,
    EventFormatError,
    HubForked,
    JobCancelledError,
    JobConfinementError,
    JobFailedError,
    JobFormatError,
    LeaseLostError,
    OutputPathError,
    ProvisionError,
    ProvisionWarning,
    QueueNotFoundError,
    SseEncodingError,
    StepUsageError,
    StreamTokenError,
    StreamTokenExpired,
    StreamTokenForged,
    StreamTokenMalformed,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionDenied,
    TemplateDefinitionError,
    TemplateNotFoundError,
    TransflowError,
    UnknownConfigKeyWarning,
    UploadError,
    UploadMetadataError,
    UploadRefusedError,
    WebhookSignatureError,
)

if TYPE_CHECKING:
    from transflow._aws.metering import (
        RequestCounter,
        count_requests,
    )
    from transflow._aws.poller import (
        Delivery,
        PollerStats,
        QueuePoller,
        backoff_visibility,
        current_delivery,
        poller_client_config,
        release_immediately,
    )
    from transflow._aws.sqs_batch import OutgoingMessage, send_batch
    from transflow._wire.channels import branch_channel, channel_matches, upload_channel
    from transflow._wire.messages import (
        ReceivedMessage,
    )
    from transflow._wire.model import (
        ProcessingJob,
        ProgressEvent,
        ProgressType,
        S3ObjectRef,
        UserContext,
    )
    from transflow._wire.naming import (
        QueueNames,
        queue_names,
        sanitize_branch,
    )
    from transflow._wire.tokens import (
        StreamGrant,
        issue_stream_token,
        verify_stream_token,
    )
    from transflow.config import (
        SqsConfig,
        TransflowConfig,
        load_config,
    )
    from transflow.ingest.bridge import (
        BridgeResponse,
        BridgeResult,
        GroupingBridge,
        SentJob,
        WaitingRecord,
    )
    from transflow.ingest.metadata import UploadMetadata, read_upload_metadata
    from transflow.ingest.s3events import (
        FailedRecord,
        SkippedRecord,
    )
    from transflow.ingest.uploads import (
        PresignedFile,
        UploadFile,
        UploadTicket,
        create_upload,
    )
    from transflow.ops.provision import (
        AttributeChange,
        EnsureReport,
        QueueUrls,
        ensure_queues,
        ensure_queues_report,
        resolve_queue_urls,
    )
    from transflow.processing.context import (
        InputFile,
        OutputFile,
        OutputLocation,
        StepContext,
    )
    from transflow.processing.processor import (
        JobProcessor,
    )
    from transflow.processing.progress import (
        ProgressPublisher,
        ProgressStream,
    )
    from transflow.processing.status import (
        AssemblyStatus,
    )
    from transflow.processing.templates import (
        Template,
        TemplateRegistry,
    )
    from transflow.processing.webhooks import (
        WebhookSender,
    )
    from transflow.processing.worker import (
        make_worker,
        run_worker,
    )
    from transflow.streaming import sse as sse
    from transflow.streaming.apps import asgi_app, wsgi_app
    from transflow.streaming.fanout import (
        Subscription,
    )
    from transflow.streaming.hub import (
        HubStats,
        ProgressHub,
    )
    from transflow.streaming.snapshot import (
        UploadState,
        UploadStatus,
    )

# Where each lazily imported public name lives.
_HOMES: dict[str, str] = {
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
    "ReceivedMessage": "transflow._wire.messages",
    "ProcessingJob": "transflow._wire.model",
    "ProgressEvent": "transflow._wire.model",
    "ProgressType": "transflow._wire.model",
    "S3ObjectRef": "transflow._wire.model",
    "UserContext": "transflow._wire.model",
    "branch_channel": "transflow._wire.channels",
    "channel_matches": "transflow._wire.channels",
    "upload_channel": "transflow._wire.channels",
    "StreamGrant": "transflow._wire.tokens",
    "issue_stream_token": "transflow._wire.tokens",
    "verify_stream_token": "transflow._wire.tokens",
    "QueueNames": "transflow._wire.naming",
    "queue_names": "transflow._wire.naming",
    "sanitize_branch": "transflow._wire.naming",
    "SqsConfig": "transflow.config",
    "TransflowConfig": "transflow.config",
    "load_config": "transflow.config",
    "BridgeResponse": "transflow.ingest.bridge",
    "BridgeResult": "transflow.ingest.bridge",
    "GroupingBridge": "transflow.ingest.bridge",
    "SentJob": "transflow.ingest.bridge",
    "WaitingRecord": "transflow.ingest.bridge",
    "FailedRecord": "transflow.ingest.s3events",
    "SkippedRecord": "transflow.ingest.s3events",
    "PresignedFile": "transflow.ingest.uploads",
    "UploadFile": "transflow.ingest.uploads",
    "UploadMetadata": "transflow.ingest.metadata",
    "UploadTicket": "transflow.ingest.uploads",
    "create_upload": "transflow.ingest.uploads",
    "read_upload_metadata": "transflow.ingest.metadata",
    "AttributeChange": "transflow.ops.provision",
    "EnsureReport": "transflow.ops.provision",
    "QueueUrls": "transflow.ops.provision",
    "ensure_queues": "transflow.ops.provision",
    "ensure_queues_report": "transflow.ops.provision",
    "resolve_queue_urls": "transflow.ops.provision",
    "InputFile": "transflow.processing.context",
    "OutputFile": "transflow.processing.context",
    "OutputLocation": "transflow.processing.context",
    "StepContext": "transflow.processing.context",
    "JobProcessor": "transflow.processing.processor",
    "ProgressPublisher": "transflow.processing.progress",
    "ProgressStream": "transflow.processing.progress",
    "AssemblyStatus": "transflow.processing.status",
    "Template": "transflow.processing.templates",
    "TemplateRegistry": "transflow.processing.templates",
    "WebhookSender": "transflow.processing.webhooks",
    "make_worker": "transflow.processing.worker",
    "run_worker": "transflow.processing.worker",
    "asgi_app": "transflow.streaming.apps",
    "wsgi_app": "transflow.streaming.apps",
    "HubStats": "transflow.streaming.hub",
    "ProgressHub": "transflow.streaming.hub",
    "Subscription": "transflow.streaming.fanout",
    "UploadState": "transflow.streaming.snapshot",
    "UploadStatus": "transflow.streaming.snapshot",
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
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_MODULES))


__all__ = [
    "AssemblyStatus",
    "AttributeChange",
    "BatchFailedError",
    "BridgeError",
    "BridgeResponse",
    "BridgeResult",
    "ChannelError",
    "CommandError",
    "CommandFailedError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "ConfigError",
    "ConfirmationRequiredError",
    "Delivery",
    "DuplicateTemplateError",
    "EmptyTemplateError",
    "EnsureReport",
    "EventFormatError",
    "FailedRecord",
    "GroupingBridge",
    "HubForked",
    "HubStats",
    "InputFile",
    "JobCancelledError",
    "JobConfinementError",
    "JobFailedError",
    "JobFormatError",
    "JobProcessor",
    "LeaseLostError",
    "OutgoingMessage",
    "OutputFile",
    "OutputLocation",
    "OutputPathError",
    "PollerStats",
    "PresignedFile",
    "ProcessingJob",
    "ProgressEvent",
    "ProgressHub",
    "ProgressPublisher",
    "ProgressStream",
    "ProgressType",
    "ProvisionError",
    "ProvisionWarning",
    "QueueNames",
    "QueueNotFoundError",
    "QueuePoller",
    "QueueUrls",
    "ReceivedMessage",
    "RequestCounter",
    "S3ObjectRef",
    "SentJob",
    "SkippedRecord",
    "SqsConfig",
    "SseEncodingError",
    "StepContext",
    "StepUsageError",
    "StreamGrant",
    "StreamTokenError",
    "StreamTokenExpired",
    "StreamTokenForged",
    "StreamTokenMalformed",
    "SubscriberLagged",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionDenied",
    "Template",
    "TemplateDefinitionError",
    "TemplateNotFoundError",
    "TemplateRegistry",
    "TransflowConfig",
    "TransflowError",
    "UnknownConfigKeyWarning",
    "UploadError",
    "UploadFile",
    "UploadMetadata",
    "UploadMetadataError",
    "UploadRefusedError",
    "UploadState",
    "UploadStatus",
    "UploadTicket",
    "UserContext",
    "WaitingRecord",
    "WebhookSender",
    "WebhookSignatureError",
    "__version__",
    "asgi_app",
    "backoff_visibility",
    "branch_channel",
    "channel_matches",
    "count_requests",
    "create_upload",
    "current_delivery",
    "ensure_queues",
    "ensure_queues_report",
    "issue_stream_token",
    "load_config",
    "make_worker",
    "poller_client_config",
    "queue_names",
    "read_upload_metadata",
    "release_immediately",
    "resolve_queue_urls",
    "run_worker",
    "sanitize_branch",
    "send_batch",
    "upload_channel",
    "verify_stream_token",
    "wsgi_app",
]
