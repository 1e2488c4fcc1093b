"""transflow: serverless media-processing pipelines on AWS, with SQS as the only messaging.

The public API is re-exported here and nowhere else; submodules are implementation homes.
"""

from transflow._version import __version__
from transflow.bridge import BridgeResponse, BridgeResult, GroupingBridge, SentJob, WaitingRecord
from transflow.config import SqsConfig, TransflowConfig, load_config
from transflow.context import InputFile, OutputFile, OutputLocation, StepContext
from transflow.errors import (
    BatchFailedError,
    BridgeError,
    CommandError,
    CommandFailedError,
    CommandNotFoundError,
    CommandTimeoutError,
    ConfigError,
    ConfirmationRequiredError,
    DuplicateTemplateError,
    EmptyTemplateError,
    EventFormatError,
    JobFailedError,
    JobFormatError,
    OutputPathError,
    ProvisionError,
    ProvisionWarning,
    QueueNotFoundError,
    StepUsageError,
    TemplateDefinitionError,
    TemplateNotFoundError,
    TransflowError,
    UnknownConfigKeyWarning,
    UploadError,
    UploadMetadataError,
    UploadRefusedError,
    WebhookSignatureError,
)
from transflow.messages import ReceivedMessage
from transflow.metering import RequestCounter, count_requests
from transflow.model import (
    ProcessingJob,
    ProgressEvent,
    ProgressType,
    S3ObjectRef,
    UserContext,
    branch_channel,
    channel_matches,
    upload_channel,
)
from transflow.naming import QueueNames, queue_names, sanitize_branch
from transflow.processor import JobProcessor
from transflow.progress import ProgressPublisher, ProgressStream
from transflow.provision import (
    AttributeChange,
    EnsureReport,
    QueueUrls,
    ensure_queues,
    ensure_queues_report,
)
from transflow.s3events import FailedRecord, SkippedRecord
from transflow.status import AssemblyStatus
from transflow.templates import Template, TemplateRegistry
from transflow.uploads import (
    PresignedFile,
    UploadFile,
    UploadMetadata,
    UploadTicket,
    create_upload,
    read_upload_metadata,
)
from transflow.webhooks import WebhookSender

__all__ = [
    "AssemblyStatus",
    "AttributeChange",
    "BatchFailedError",
    "BridgeError",
    "BridgeResponse",
    "BridgeResult",
    "CommandError",
    "CommandFailedError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "ConfigError",
    "ConfirmationRequiredError",
    "DuplicateTemplateError",
    "EmptyTemplateError",
    "EnsureReport",
    "EventFormatError",
    "FailedRecord",
    "GroupingBridge",
    "InputFile",
    "JobFailedError",
    "JobFormatError",
    "JobProcessor",
    "OutputFile",
    "OutputLocation",
    "OutputPathError",
    "PresignedFile",
    "ProcessingJob",
    "ProgressEvent",
    "ProgressPublisher",
    "ProgressStream",
    "ProgressType",
    "ProvisionError",
    "ProvisionWarning",
    "QueueNames",
    "QueueNotFoundError",
    "QueueUrls",
    "ReceivedMessage",
    "RequestCounter",
    "S3ObjectRef",
    "SentJob",
    "SkippedRecord",
    "SqsConfig",
    "StepContext",
    "StepUsageError",
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
    "UploadTicket",
    "UserContext",
    "WaitingRecord",
    "WebhookSender",
    "WebhookSignatureError",
    "__version__",
    "branch_channel",
    "channel_matches",
    "count_requests",
    "create_upload",
    "ensure_queues",
    "ensure_queues_report",
    "load_config",
    "queue_names",
    "read_upload_metadata",
    "sanitize_branch",
    "upload_channel",
]
