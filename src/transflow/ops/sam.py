"""An AWS SAM template that deploys one project and branch of the pipeline.

The queues (as :mod:`transflow.ops.provision` makes them); the upload bucket, whose
``uploads/{branch}/`` notifications go to a standard queue ``{project}-{branch}-uploads``
(with its own dead-letter queue) that the bridge function consumes in batches with
ReportBatchItemFailures, so no upload is lost to a failed invocation; the processing
function with an SQS event source mapping (batch size, ReportBatchItemFailures, maximum
concurrency); a scheduled recovery function (:func:`transflow.ops.announce.announce` and
:func:`transflow.ops.recovery.sweep_stale_uploads`); CloudWatch alarms on the dead-letter
queues and on the age of the oldest job; environment and least-privilege roles
(:mod:`transflow.ops.iam`). Pure: builds text.

What to deploy is a :class:`SamOptions` (checked when it is made); each resource is built by
a function of its own, and :func:`sam_template` puts them together.

Longer than 500 lines on purpose: most of it is the template's resources as literals, one
function each, and they read best next to the one function that assembles them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from transflow.config import ENV_PROGRESS_TOPIC_ARN, TransflowConfig
from transflow.errors import ConfigError
from transflow.ops._yaml import dump
from transflow.ops.iam import (
    FanOutResources,
    PolicyDocument,
    bucket_problems,
    build_policies,
    fanout_resources,
)

__all__ = [
    "DEFAULT_STALE_UPLOAD_AGE_SEC",
    "MAX_FUNCTION_TIMEOUT_SEC",
    "BridgeTrigger",
    "SamOptions",
    "default_function_timeout",
    "sam_template",
]

BridgeTrigger = Literal["queue", "s3"]
"""How S3 notifications reach the bridge: ``"queue"`` (a standard queue with a dead-letter
queue: nothing is lost) or ``"s3"`` (S3 invokes the function directly: after Lambda's two
retries a failed event is gone)."""
DEFAULT_STALE_UPLOAD_AGE_SEC = 3600
"""How long an incomplete upload may wait for its next file before the sweep fails it."""

MAX_FUNCTION_TIMEOUT_SEC = 900
"""Lambda's limit on a function's timeout, in seconds."""
_MAX_FUNCTION_NAME = 64
_RETENTION_MAX = 14 * 24 * 3600
# A notification that failed this often is poison (a hostile body, a deleted object): it
# waits in the uploads dead-letter queue for a person.
_UPLOADS_MAX_RECEIVE = 5
# CloudFormation fills these in: the template names no account, region or partition.
_PLACEHOLDERS = {
    "partition": "${AWS::Partition}",
    "region": "${AWS::Region}",
    "account_id": "${AWS::AccountId}",
}


def _origins(value: Sequence[str]) -> tuple[str, ...]:
    # One origin given as a string would otherwise become a tuple of its letters.
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen
class SamOptions:
    """What :func:`sam_template` deploys besides the configuration's queues.

    The template creates the upload bucket (SAM's S3 event needs the bucket in the same
    template) and ``output_bucket`` when it is another one (default: the upload bucket).
    ``claim_check_prefix`` is where the bridge stores jobs too large for a message (in the
    output bucket), as for :func:`transflow.ops.iam.iam_policies`. ``function_timeout_sec``
    (the processor's) defaults to one sixth of the queue visibility timeout (AWS's
    guidance), at most 900. ``maximum_concurrency`` (2 to 1000) caps how many processors the
    queue may run at once.

    ``bridge_trigger`` ``"queue"`` (the default) sends S3 notifications to the standard
    queue ``{project}-{branch}-uploads``, read by the bridge ``bridge_batch_size`` at a time
    (waiting up to ``bridge_batching_window_sec`` to fill a batch, so the files of one upload
    tend to arrive together); a notification that fails ``5`` times moves to
    ``{project}-{branch}-uploads-dlq``. ``"s3"`` lets S3 invoke the bridge directly: simpler,
    but lossy, since an event that fails Lambda's two retries is dropped.

    ``recovery_handler`` (None: no such function) runs every ``recovery_schedule`` (an
    EventBridge ``rate(...)`` or ``cron(...)``) with ``TRANSFLOW_STALE_UPLOAD_AGE_SEC``.
    Alarms fire when a dead-letter queue holds a message and when the oldest job has waited
    longer than ``queue_age_alarm_sec`` (default: the visibility timeout); they notify
    ``alarm_topic_arn`` when given.

    The upload bucket aborts multipart uploads left incomplete for
    ``abort_incomplete_multipart_days`` days (a browser that never came back), so their
    parts stop costing storage. ``upload_origins`` (the web origins of the pages that
    upload, such as ``https://app.example.com``) adds the bucket's CORS rule: POST for
    presigned POSTs, PUT for multipart parts, with ``ETag`` exposed (the browser reads each
    part's ETag to complete the upload).

    Raises :class:`ConfigError`, naming every problem, for a malformed bucket name or
    prefix and for values Lambda, SQS or EventBridge would refuse."""

    upload_bucket: str
    output_bucket: str | None = None
    code_uri: str = "."
    bridge_handler: str = "app.bridge_handler"
    processor_handler: str = "app.processor_handler"
    runtime: str = "python3.12"
    function_timeout_sec: int | None = None
    bridge_timeout_sec: int = 60
    memory_mb: int = 1024
    maximum_concurrency: int | None = None
    claim_check_prefix: str | None = None
    bridge_trigger: BridgeTrigger = "queue"
    bridge_batch_size: int = 100
    bridge_batching_window_sec: int = 2
    recovery_handler: str | None = "app.recovery_handler"
    recovery_schedule: str = "rate(15 minutes)"
    stale_upload_age_sec: int = DEFAULT_STALE_UPLOAD_AGE_SEC
    queue_age_alarm_sec: int | None = None
    alarm_topic_arn: str | None = None
    abort_incomplete_multipart_days: int = 7
    upload_origins: tuple[str, ...] = attrs.field(default=(), converter=_origins)

    def __attrs_post_init__(self) -> None:
        problems = [
            *bucket_problems(self.upload_bucket, self.output_bucket, self.claim_check_prefix),
            *self._limits(),
        ]
        if problems:
            raise ConfigError("cannot write the SAM template: " + "; ".join(problems))

    def _limits(self) -> list[str]:
        """What Lambda, SQS or EventBridge would refuse among the settings."""
        problems: list[str] = []
        timeout = self.function_timeout_sec
        # 0 (like None) means the default, as it always has.
        if timeout and not 1 <= timeout <= MAX_FUNCTION_TIMEOUT_SEC:
            problems.append(f"function timeout {timeout}s must be from 1 to 900 seconds")
        bridge_timeout = self.bridge_timeout_sec
        if not 1 <= bridge_timeout <= MAX_FUNCTION_TIMEOUT_SEC:
            problems.append(f"bridge timeout {bridge_timeout}s must be from 1 to 900 seconds")
        if not 128 <= self.memory_mb <= 10_240:
            problems.append(f"memory {self.memory_mb} MB must be from 128 to 10240")
        concurrency = self.maximum_concurrency
        if concurrency is not None and not 2 <= concurrency <= 1000:
            problems.append(f"maximum concurrency {concurrency} must be from 2 to 1000")
        if self.bridge_trigger not in ("queue", "s3"):
            problems.append(f"bridge trigger {self.bridge_trigger!r} must be 'queue' or 's3'")
        batch, window = self.bridge_batch_size, self.bridge_batching_window_sec
        if not 1 <= batch <= 10_000:
            problems.append(f"bridge batch size {batch} must be from 1 to 10000")
        if not 0 <= window <= 300:
            problems.append(f"bridge batching window {window}s must be from 0 to 300")
        elif batch > 10 and window < 1:
            problems.append("a bridge batch size above 10 needs a batching window of 1 s or more")
        days = self.abort_incomplete_multipart_days
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            problems.append(
                f"abort_incomplete_multipart_days {days!r} must be a whole number of days, "
                "1 or more"
            )
        for origin in self.upload_origins:
            if not isinstance(origin, str) or not re.fullmatch(r"https?://[^/\s*]+|\*", origin):
                problems.append(
                    f"upload origin {origin!r} must be a web origin such as "
                    "'https://app.example.com' (no path) or '*'"
                )
        if self.stale_upload_age_sec < 60:
            problems.append(f"stale upload age {self.stale_upload_age_sec}s must be 60 or more")
        return problems

    @property
    def outputs(self) -> str:
        """The output bucket: ``output_bucket``, else the upload bucket."""
        return self.output_bucket or self.upload_bucket

    @property
    def queue_trigger(self) -> bool:
        """Whether S3 notifications reach the bridge through the uploads queue."""
        return self.bridge_trigger == "queue"

    def processor_timeout(self, config: TransflowConfig) -> int:
        """The processing function's timeout for ``config``'s queue; :class:`ConfigError`
        when Lambda would refuse it for the queue's visibility timeout."""
        visibility = config.sqs.visibility_timeout_sec
        timeout = self.function_timeout_sec or default_function_timeout(visibility)
        if timeout > visibility:
            raise ConfigError(
                f"cannot write the SAM template: function timeout {timeout}s is longer than "
                f"sqs.visibilityTimeoutSec ({visibility}s), which Lambda refuses for an SQS "
                "trigger"
            )
        return timeout


def default_function_timeout(visibility_timeout_sec: int) -> int:
    """The longest function timeout AWS's guidance allows for a queue visibility timeout
    (one sixth of it), within Lambda's 1 to 900 seconds."""
    return max(1, min(MAX_FUNCTION_TIMEOUT_SEC, visibility_timeout_sec // 6))


def _function_name(config: TransflowConfig, part: str) -> str:
    name = f"{config.project}-{config.branch}-{part}"
    if len(name) <= _MAX_FUNCTION_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_FUNCTION_NAME - len(part) - 10].rstrip('-')}-{digest}-{part}"


def _sub(text: str) -> Any:
    return {"Fn::Sub": text} if "${" in text else text


def _policy(document: PolicyDocument) -> dict[str, Any]:
    return {
        "Version": document["Version"],
        "Statement": [
            {**statement, "Resource": [_sub(r) for r in statement["Resource"]]}
            for statement in document["Statement"]
        ],
    }


def _role(name: str, document: PolicyDocument) -> dict[str, Any]:
    # An explicit role: with an SQS event SAM would otherwise attach a managed policy that
    # allows receiving from every queue in the account.
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "ManagedPolicyArns": [
                {
                    "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole"
                }
            ],
            "Policies": [{"PolicyName": name, "PolicyDocument": _policy(document)}],
        },
    }


def _bucket(name: str) -> dict[str, Any]:
    return {
        "Type": "AWS::S3::Bucket",
        # Uploads and outputs outlive a stack update or deletion.
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": name,
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        },
    }


def _tags(config: TransflowConfig) -> list[dict[str, str]]:
    return [
        {"Key": "project", "Value": config.project},
        {"Key": "branch", "Value": config.branch},
        {"Key": "managed-by", "Value": "transflow"},
    ]


def _fifo(config: TransflowConfig) -> dict[str, Any]:
    return {
        "FifoQueue": True,
        "ContentBasedDeduplication": False,
        "MaximumMessageSize": config.sqs.max_message_bytes,
        "Tags": _tags(config),
    }


def _dead_letter_queue(config: TransflowConfig) -> dict[str, Any]:
    names = config.queue_names
    processing_arn = (
        "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + names.processing
    )
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": names.dlq,
            **_fifo(config),
            "MessageRetentionPeriod": _RETENTION_MAX,
            "RedriveAllowPolicy": {
                "redrivePermission": "byQueue",
                "sourceQueueArns": [{"Fn::Sub": processing_arn}],
            },
        },
    }


def _processing_queue(config: TransflowConfig) -> dict[str, Any]:
    sqs = config.sqs
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": config.queue_names.processing,
            **_fifo(config),
            "MessageRetentionPeriod": sqs.retention_sec,
            "VisibilityTimeout": sqs.visibility_timeout_sec,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                "maxReceiveCount": sqs.max_receive_count,
            },
        },
    }


def _progress_queue(config: TransflowConfig) -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": config.queue_names.progress,
            **_fifo(config),
            "MessageRetentionPeriod": config.sqs.retention_sec,
        },
    }


def _progress_topic(config: TransflowConfig) -> dict[str, Any]:
    # Fan-out mode: every hub instance subscribes its own queue to this topic.
    return {
        "Type": "AWS::SNS::Topic",
        "Properties": {
            "TopicName": config.topic_name,
            "FifoTopic": True,
            "ContentBasedDeduplication": False,
            "Tags": _tags(config),
        },
    }


def _uploads_rule(config: TransflowConfig) -> dict[str, str]:
    return {"Name": "prefix", "Value": f"uploads/{config.branch}/"}


def _upload_bucket(config: TransflowConfig, options: SamOptions) -> dict[str, Any]:
    bucket = _bucket(options.upload_bucket)
    properties = bucket["Properties"]
    properties["LifecycleConfiguration"] = {
        "Rules": [
            {
                "Id": "AbortIncompleteMultipartUploads",
                "Status": "Enabled",
                "Prefix": "uploads/",
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": options.abort_incomplete_multipart_days
                },
            }
        ]
    }
    if options.upload_origins:
        properties["CorsConfiguration"] = {
            "CorsRules": [
                {
                    "AllowedMethods": ["POST", "PUT"],
                    "AllowedOrigins": list(options.upload_origins),
                    "AllowedHeaders": ["*"],
                    "ExposedHeaders": ["ETag"],
                    "MaxAge": 3600,
                }
            ]
        }
    if options.queue_trigger:
        bucket["DependsOn"] = "UploadsQueuePolicy"
        bucket["Properties"]["NotificationConfiguration"] = {
            "QueueConfigurations": [
                {
                    "Event": "s3:ObjectCreated:*",
                    "Queue": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
                    "Filter": {"S3Key": {"Rules": [_uploads_rule(config)]}},
                }
            ]
        }
    return bucket


def _environment(
    config: TransflowConfig, options: SamOptions, fanout: FanOutResources | None
) -> dict[str, Any]:
    """The functions' environment: what :func:`transflow.load_config` and the handlers read."""
    sqs = config.sqs
    environment: dict[str, Any] = {
        "TRANSFLOW_PROJECT": config.project,
        "TRANSFLOW_BRANCH": config.branch,
        "SQS_QUEUE_URL": {"Ref": "ProcessingQueue"},
        "SQS_PROGRESS_QUEUE_URL": {"Ref": "ProgressQueue"},
        "SQS_DLQ_URL": {"Ref": "DeadLetterQueue"},
        "MAX_BATCH_SIZE": str(sqs.batch_size),
        # The processor must know which delivery is the last: it decides `retrying` and
        # when the error webhook fires.
        "TRANSFLOW_MAX_RECEIVE_COUNT": str(sqs.max_receive_count),
        "TRANSFLOW_UPLOAD_BUCKET": options.upload_bucket,
        "TRANSFLOW_OUTPUT_BUCKET": options.outputs,
    }
    if fanout is not None:
        # The processor publishes progress to the topic; load_config reads it back.
        environment[ENV_PROGRESS_TOPIC_ARN] = (
            {"Ref": "ProgressTopic"} if sqs.progress_topic_arn is None else sqs.progress_topic_arn
        )
    return environment


def _bridge_policy(policy: PolicyDocument, options: SamOptions) -> PolicyDocument:
    if options.queue_trigger:
        return policy
    # No uploads queue to consume from.
    return PolicyDocument(
        Version=policy["Version"],
        Statement=[s for s in policy["Statement"] if s["Sid"] != "ConsumeUploadNotifications"],
    )


def _bridge_events(config: TransflowConfig, options: SamOptions) -> dict[str, Any]:
    if options.queue_trigger:
        return {
            "Uploads": {
                "Type": "SQS",
                "Properties": {
                    "Queue": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
                    "BatchSize": options.bridge_batch_size,
                    "MaximumBatchingWindowInSeconds": options.bridge_batching_window_sec,
                    # A notification that failed is retried alone; the rest are deleted.
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                },
            }
        }
    # Lossy: S3 invokes asynchronously, and an event that fails Lambda's two retries is
    # dropped (docs/deployment.md).
    return {
        "Uploads": {
            "Type": "S3",
            "Properties": {
                "Bucket": {"Ref": "UploadBucket"},
                "Events": "s3:ObjectCreated:*",
                "Filter": {"S3Key": {"Rules": [_uploads_rule(config)]}},
            },
        }
    }


def _bridge_function(
    config: TransflowConfig, options: SamOptions, environment: dict[str, Any]
) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "FunctionName": _function_name(config, "bridge"),
            "CodeUri": options.code_uri,
            "Handler": options.bridge_handler,
            "Runtime": options.runtime,
            "Timeout": options.bridge_timeout_sec,
            "MemorySize": 256,
            "Role": {"Fn::GetAtt": ["BridgeRole", "Arn"]},
            "Environment": {"Variables": environment},
            "Events": _bridge_events(config, options),
        },
    }


def _processor_function(
    config: TransflowConfig, options: SamOptions, environment: dict[str, Any], timeout: int
) -> dict[str, Any]:
    scaling = (
        {"ScalingConfig": {"MaximumConcurrency": options.maximum_concurrency}}
        if options.maximum_concurrency is not None
        else {}
    )
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "FunctionName": _function_name(config, "processor"),
            "CodeUri": options.code_uri,
            "Handler": options.processor_handler,
            "Runtime": options.runtime,
            "Timeout": timeout,
            "MemorySize": options.memory_mb,
            "Role": {"Fn::GetAtt": ["ProcessorRole", "Arn"]},
            "Environment": {"Variables": environment},
            "Events": {
                "Jobs": {
                    "Type": "SQS",
                    "Properties": {
                        "Queue": {"Fn::GetAtt": ["ProcessingQueue", "Arn"]},
                        "BatchSize": config.sqs.batch_size,
                        # A failed job fails alone (and the rest of its group), not the
                        # whole batch.
                        "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        **scaling,
                    },
                }
            },
        },
    }


def _recovery_function(
    config: TransflowConfig, options: SamOptions, environment: dict[str, Any], handler: str
) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "FunctionName": _function_name(config, "recovery"),
            "CodeUri": options.code_uri,
            "Handler": handler,
            "Runtime": options.runtime,
            "Timeout": 300,
            "MemorySize": 256,
            "Role": {"Fn::GetAtt": ["RecoveryRole", "Arn"]},
            "Environment": {
                "Variables": {
                    **environment,
                    "TRANSFLOW_STALE_UPLOAD_AGE_SEC": str(options.stale_upload_age_sec),
                }
            },
            "Events": {
                "Sweep": {
                    "Type": "Schedule",
                    "Properties": {
                        "Schedule": options.recovery_schedule,
                        "Description": "announce dead-lettered jobs, fail stale uploads",
                    },
                }
            },
        },
    }


def _uploads_queues(
    config: TransflowConfig, upload_bucket: str, bridge_timeout_sec: int
) -> dict[str, Any]:
    """The standard queue of S3 notifications, its dead-letter queue, and the policy that
    lets the bucket (and only it) send to it."""
    names = config.queue_names
    tags = _tags(config)
    return {
        "UploadsDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.uploads_dlq,
                "MessageRetentionPeriod": _RETENTION_MAX,
                "Tags": tags,
            },
        },
        "UploadsQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.uploads,
                "MessageRetentionPeriod": config.sqs.retention_sec,
                # AWS's guidance for an SQS trigger: six times the function's timeout.
                "VisibilityTimeout": min(43_200, 6 * bridge_timeout_sec),
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["UploadsDeadLetterQueue", "Arn"]},
                    "maxReceiveCount": _UPLOADS_MAX_RECEIVE,
                },
                "Tags": tags,
            },
        },
        "UploadsQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "UploadsQueue"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "UploadBucketNotifies",
                            "Effect": "Allow",
                            "Principal": {"Service": "s3.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
                            "Condition": {
                                "ArnLike": {
                                    "aws:SourceArn": {
                                        "Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{upload_bucket}"
                                    }
                                },
                                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                            },
                        }
                    ],
                },
            },
        },
    }


def _alarm(description: str, queue: str, metric: str, threshold: int, actions: list[str]) -> Any:
    notify = {"AlarmActions": actions, "OKActions": actions} if actions else {}
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": "AWS/SQS",
            "MetricName": metric,
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            # No data means an idle queue, not a broken one.
            "TreatMissingData": "notBreaching",
            **notify,
        },
    }


def _alarms(config: TransflowConfig, options: SamOptions) -> dict[str, Any]:
    """An alarm on each dead-letter queue holding a message, and one on the age of the
    oldest processing job."""
    actions = [options.alarm_topic_arn] if options.alarm_topic_arn else []
    dead_letters = [("DeadLetterQueue", "jobs failed on every delivery")]
    if options.queue_trigger:
        dead_letters.append(("UploadsDeadLetterQueue", "S3 notifications the bridge gave up on"))
    alarms = {
        f"{queue}Alarm": _alarm(
            f"{what}: see docs/operations.md (transflow dlq peek / redrive)",
            queue,
            "ApproximateNumberOfMessagesVisible",
            0,
            actions,
        )
        for queue, what in dead_letters
    }
    age = options.queue_age_alarm_sec or config.sqs.visibility_timeout_sec
    alarms["ProcessingQueueAgeAlarm"] = _alarm(
        f"the oldest processing job has waited over {age}s: processors are failing, "
        "throttled or too few",
        "ProcessingQueue",
        "ApproximateAgeOfOldestMessage",
        age,
        actions,
    )
    return alarms


def _outputs(
    options: SamOptions, environment: dict[str, Any], fanout: FanOutResources | None
) -> dict[str, Any]:
    uploads_queues = {
        "UploadsQueueUrl": {"Value": {"Ref": "UploadsQueue"}},
        "UploadsDeadLetterQueueUrl": {"Value": {"Ref": "UploadsDeadLetterQueue"}},
    }
    return {
        "ProcessingQueueUrl": {"Value": {"Ref": "ProcessingQueue"}},
        "ProgressQueueUrl": {"Value": {"Ref": "ProgressQueue"}},
        "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
        "BridgeFunctionArn": {"Value": {"Fn::GetAtt": ["BridgeFunction", "Arn"]}},
        **(uploads_queues if options.queue_trigger else {}),
        "ProcessorFunctionArn": {"Value": {"Fn::GetAtt": ["ProcessorFunction", "Arn"]}},
        **(
            {"ProgressTopicArn": {"Value": environment[ENV_PROGRESS_TOPIC_ARN]}}
            if fanout is not None
            else {}
        ),
    }


def _header(config: TransflowConfig, options: SamOptions) -> str:
    names = config.queue_names
    return (
        "# Generated by transflow (transflow sam). Deploy with: sam deploy --guided\n"
        f"# Queues: {names.processing}, {names.progress}, {names.dlq}\n"
        + (
            f"# S3 notifications: {names.uploads} (dead letters: {names.uploads_dlq})\n"
            if options.queue_trigger
            else "# S3 invokes the bridge directly: a notification that fails is lost\n"
        )
    )


def sam_template(config: TransflowConfig, options: SamOptions) -> str:
    """The SAM template (YAML) for ``config``'s project and branch, with the buckets,
    functions and alarms of ``options``. Raises :class:`ConfigError` when the processor's
    timeout is longer than the queue's visibility timeout (Lambda refuses that for an SQS
    trigger)."""
    timeout = options.processor_timeout(config)
    fanout = fanout_resources(config, **_PLACEHOLDERS)
    policies = build_policies(
        config.queue_names,
        branch=config.branch,
        **_PLACEHOLDERS,
        upload_bucket=options.upload_bucket,
        output_bucket=options.outputs,
        claim_check_prefix=options.claim_check_prefix,
        fanout=fanout,
    )
    environment = _environment(config, options, fanout)
    resources: dict[str, Any] = {
        "DeadLetterQueue": _dead_letter_queue(config),
        "ProcessingQueue": _processing_queue(config),
        "ProgressQueue": _progress_queue(config),
        "UploadBucket": _upload_bucket(config, options),
        "BridgeRole": _role("transflow-bridge", _bridge_policy(policies.bridge, options)),
        "ProcessorRole": _role("transflow-processor", policies.processor),
        "BridgeFunction": _bridge_function(config, options, environment),
        "ProcessorFunction": _processor_function(config, options, environment, timeout),
    }
    if options.outputs != options.upload_bucket:
        resources["OutputBucket"] = _bucket(options.outputs)
    if fanout is not None and config.sqs.progress_topic_arn is None:
        resources["ProgressTopic"] = _progress_topic(config)
    if options.queue_trigger:
        resources.update(_uploads_queues(config, options.upload_bucket, options.bridge_timeout_sec))
    if options.recovery_handler is not None:
        resources["RecoveryRole"] = _role("transflow-recovery", policies.recovery)
        resources["RecoveryFunction"] = _recovery_function(
            config, options, environment, options.recovery_handler
        )
    resources.update(_alarms(config, options))
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"transflow pipeline for {config.project}, branch {config.branch}",
        "Resources": resources,
        "Outputs": _outputs(options, environment, fanout),
    }
    return _header(config, options) + dump(template)
