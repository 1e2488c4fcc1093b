"""transflow: serverless media-processing pipelines on AWS, with SQS as the only messaging.

The public API is re-exported here and nowhere else; submodules are implementation homes.
"""

from transflow._version import __version__
from transflow.config import SqsConfig, TransflowConfig, load_config
from transflow.errors import (
    ConfigError,
    ConfirmationRequiredError,
    EventFormatError,
    JobFormatError,
    ProvisionError,
    ProvisionWarning,
    QueueNotFoundError,
    TransflowError,
    UnknownConfigKeyWarning,
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
from transflow.provision import (
    AttributeChange,
    EnsureReport,
    QueueUrls,
    ensure_queues,
    ensure_queues_report,
)

__all__ = [
    "AttributeChange",
    "ConfigError",
    "ConfirmationRequiredError",
    "EnsureReport",
    "EventFormatError",
    "JobFormatError",
    "ProcessingJob",
    "ProgressEvent",
    "ProgressType",
    "ProvisionError",
    "ProvisionWarning",
    "QueueNames",
    "QueueNotFoundError",
    "QueueUrls",
    "ReceivedMessage",
    "RequestCounter",
    "S3ObjectRef",
    "SqsConfig",
    "TransflowConfig",
    "TransflowError",
    "UnknownConfigKeyWarning",
    "UserContext",
    "__version__",
    "branch_channel",
    "channel_matches",
    "count_requests",
    "ensure_queues",
    "ensure_queues_report",
    "load_config",
    "queue_names",
    "sanitize_branch",
    "upload_channel",
]
