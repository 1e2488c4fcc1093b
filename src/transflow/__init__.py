"""transflow: serverless media-processing pipelines on AWS, with SQS as the only messaging.

The public API is re-exported here and nowhere else; submodules are implementation homes.
"""

from transflow._version import __version__
from transflow.config import SqsConfig, TransflowConfig, load_config
from transflow.errors import (
    ChannelError,
    ConfigError,
    EventFormatError,
    JobFormatError,
    SseEncodingError,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionDenied,
    TransflowError,
    UnknownConfigKeyWarning,
)
from transflow.hub import HubStats, ProgressHub, Subscription
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
from transflow.poller import (
    Delivery,
    PollerStats,
    QueuePoller,
    backoff_visibility,
    current_delivery,
    poller_client_config,
    release_immediately,
)
from transflow.status import UploadState, UploadStatus

__all__ = [
    "ChannelError",
    "ConfigError",
    "Delivery",
    "EventFormatError",
    "HubStats",
    "JobFormatError",
    "PollerStats",
    "ProcessingJob",
    "ProgressEvent",
    "ProgressHub",
    "ProgressType",
    "QueueNames",
    "QueuePoller",
    "ReceivedMessage",
    "RequestCounter",
    "S3ObjectRef",
    "SqsConfig",
    "SseEncodingError",
    "SubscriberLagged",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionDenied",
    "TransflowConfig",
    "TransflowError",
    "UnknownConfigKeyWarning",
    "UploadState",
    "UploadStatus",
    "UserContext",
    "__version__",
    "backoff_visibility",
    "branch_channel",
    "channel_matches",
    "count_requests",
    "current_delivery",
    "load_config",
    "poller_client_config",
    "queue_names",
    "release_immediately",
    "sanitize_branch",
    "upload_channel",
]
