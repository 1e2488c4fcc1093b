"""transflow: serverless media-processing pipelines on AWS, with SQS as the only messaging.

The public API is re-exported here and nowhere else; submodules are implementation homes.
"""

from transflow._version import __version__
from transflow.config import SqsConfig, TransflowConfig, load_config
from transflow.context import InputFile, OutputFile, OutputLocation, StepContext
from transflow.errors import (
    BatchFailedError,
    CommandError,
    CommandFailedError,
    CommandNotFoundError,
    CommandTimeoutError,
    ConfigError,
    DuplicateTemplateError,
    EmptyTemplateError,
    EventFormatError,
    JobFailedError,
    JobFormatError,
    OutputPathError,
    StepUsageError,
    TemplateDefinitionError,
    TemplateNotFoundError,
    TransflowError,
    UnknownConfigKeyWarning,
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
from transflow.status import AssemblyStatus
from transflow.templates import Template, TemplateRegistry
from transflow.webhooks import WebhookSender

__all__ = [
    "AssemblyStatus",
    "BatchFailedError",
    "CommandError",
    "CommandFailedError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "ConfigError",
    "DuplicateTemplateError",
    "EmptyTemplateError",
    "EventFormatError",
    "InputFile",
    "JobFailedError",
    "JobFormatError",
    "JobProcessor",
    "OutputFile",
    "OutputLocation",
    "OutputPathError",
    "ProcessingJob",
    "ProgressEvent",
    "ProgressPublisher",
    "ProgressStream",
    "ProgressType",
    "QueueNames",
    "ReceivedMessage",
    "RequestCounter",
    "S3ObjectRef",
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
    "UserContext",
    "WebhookSender",
    "WebhookSignatureError",
    "__version__",
    "branch_channel",
    "channel_matches",
    "count_requests",
    "load_config",
    "queue_names",
    "sanitize_branch",
    "upload_channel",
]
