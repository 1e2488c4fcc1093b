"""An AWS SAM template that deploys one project and branch of the pipeline.

The queues (as :mod:`transflow.ops.provision` makes them); the upload bucket, whose
``uploads/{branch}/`` notifications go to a standard queue ``{project}-{branch}-uploads``
(with its own dead-letter queue) that the bridge function consumes in batches with
ReportBatchItemFailures, so no upload is lost to a failed invocation; the processing
function with an SQS event source mapping (batch size, ReportBatchItemFailures, maximum
concurrency); a scheduled recovery function (:func:`transflow.ops.dlq.announce` and
:func:`transflow.ops.recovery.sweep_stale_uploads`); CloudWatch alarms on the dead-letter
queues and on the age of the oldest job; environment and least-privilege roles
(:mod:`transflow.ops.iam`). Pure: builds text.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from transflow.config import ENV_PROGRESS_TOPIC_ARN, TransflowConfig
from transflow.errors import ConfigError
from transflow.ops._yaml import dump
from transflow.ops.iam import (
    PolicyDocument,
    build_policies,
    fanout_resources,
    iam_policies,
)

__all__ = [
    "DEFAULT_STALE_UPLOAD_AGE_SEC",
    "MAX_FUNCTION_TIMEOUT_SEC",
    "BridgeTrigger",
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


def _uploads_queues(
    config: TransflowConfig, upload_bucket: str, bridge_timeout_sec: int
) -> dict[str, Any]:
    """The standard queue of S3 notifications, its dead-letter queue, and the policy that
    lets the bucket (and only it) send to it."""
    names = config.queue_names
    tags = [
        {"Key": "project", "Value": config.project},
        {"Key": "branch", "Value": config.branch},
        {"Key": "managed-by", "Value": "transflow"},
    ]
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


def _problems(
    visibility_timeout_sec: int,
    timeout: int,
    *,
    bridge_timeout_sec: int,
    memory_mb: int,
    maximum_concurrency: int | None,
    bridge_trigger: str,
    bridge_batch_size: int,
    bridge_batching_window_sec: int,
    stale_upload_age_sec: int,
) -> list[str]:
    """What Lambda, SQS or EventBridge would refuse among the template's settings."""
    problems: list[str] = []
    problems = []
    if not 1 <= timeout <= MAX_FUNCTION_TIMEOUT_SEC:
        problems.append(f"function timeout {timeout}s must be from 1 to 900 seconds")
    elif timeout > visibility_timeout_sec:
        problems.append(
            f"function timeout {timeout}s is longer than sqs.visibilityTimeoutSec "
            f"({visibility_timeout_sec}s), which Lambda refuses for an SQS trigger"
        )
    if not 1 <= bridge_timeout_sec <= MAX_FUNCTION_TIMEOUT_SEC:
        problems.append(f"bridge timeout {bridge_timeout_sec}s must be from 1 to 900 seconds")
    if not 128 <= memory_mb <= 10_240:
        problems.append(f"memory {memory_mb} MB must be from 128 to 10240")
    if maximum_concurrency is not None and not 2 <= maximum_concurrency <= 1000:
        problems.append(f"maximum concurrency {maximum_concurrency} must be from 2 to 1000")
    if bridge_trigger not in ("queue", "s3"):
        problems.append(f"bridge trigger {bridge_trigger!r} must be 'queue' or 's3'")
    if not 1 <= bridge_batch_size <= 10_000:
        problems.append(f"bridge batch size {bridge_batch_size} must be from 1 to 10000")
    if not 0 <= bridge_batching_window_sec <= 300:
        problems.append(
            f"bridge batching window {bridge_batching_window_sec}s must be from 0 to 300"
        )
    elif bridge_batch_size > 10 and bridge_batching_window_sec < 1:
        problems.append("a bridge batch size above 10 needs a batching window of 1 s or more")
    if stale_upload_age_sec < 60:
        problems.append(f"stale upload age {stale_upload_age_sec}s must be 60 or more")
    return problems


def _add_operations(
    resources: dict[str, Any],
    config: TransflowConfig,
    environment: dict[str, Any],
    *,
    upload_bucket: str,
    code_uri: str,
    runtime: str,
    bridge_trigger: BridgeTrigger,
    bridge_timeout_sec: int,
    recovery_policy: PolicyDocument,
    recovery_handler: str | None,
    recovery_schedule: str,
    stale_upload_age_sec: int,
    queue_age_alarm_sec: int,
    alarm_topic_arn: str | None,
) -> None:
    """The uploads queue and the bucket's notifications to it, the recovery function and
    the alarms."""
    uploads_rule = {"Name": "prefix", "Value": f"uploads/{config.branch}/"}
    if bridge_trigger == "queue":
        resources.update(_uploads_queues(config, upload_bucket, bridge_timeout_sec))
        resources["UploadBucket"]["DependsOn"] = "UploadsQueuePolicy"
        resources["UploadBucket"]["Properties"]["NotificationConfiguration"] = {
            "QueueConfigurations": [
                {
                    "Event": "s3:ObjectCreated:*",
                    "Queue": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
                    "Filter": {"S3Key": {"Rules": [uploads_rule]}},
                }
            ]
        }
    if recovery_handler is not None:
        resources["RecoveryRole"] = _role("transflow-recovery", recovery_policy)
        resources["RecoveryFunction"] = {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "FunctionName": _function_name(config, "recovery"),
                "CodeUri": code_uri,
                "Handler": recovery_handler,
                "Runtime": runtime,
                "Timeout": 300,
                "MemorySize": 256,
                "Role": {"Fn::GetAtt": ["RecoveryRole", "Arn"]},
                "Environment": {
                    "Variables": {
                        **environment,
                        "TRANSFLOW_STALE_UPLOAD_AGE_SEC": str(stale_upload_age_sec),
                    }
                },
                "Events": {
                    "Sweep": {
                        "Type": "Schedule",
                        "Properties": {
                            "Schedule": recovery_schedule,
                            "Description": "announce dead-lettered jobs, fail stale uploads",
                        },
                    }
                },
            },
        }
    actions = [alarm_topic_arn] if alarm_topic_arn else []
    dead_letters = [("DeadLetterQueue", "jobs failed on every delivery")]
    if bridge_trigger == "queue":
        dead_letters.append(("UploadsDeadLetterQueue", "S3 notifications the bridge gave up on"))
    for queue, what in dead_letters:
        resources[f"{queue}Alarm"] = _alarm(
            f"{what}: see docs/operations.md (transflow dlq peek / redrive)",
            queue,
            "ApproximateNumberOfMessagesVisible",
            0,
            actions,
        )
    age = queue_age_alarm_sec
    resources["ProcessingQueueAgeAlarm"] = _alarm(
        f"the oldest processing job has waited over {age}s: processors are failing, "
        "throttled or too few",
        "ProcessingQueue",
        "ApproximateAgeOfOldestMessage",
        age,
        actions,
    )


def sam_template(
    config: TransflowConfig,
    *,
    upload_bucket: str,
    output_bucket: str | None = None,
    code_uri: str = ".",
    bridge_handler: str = "app.bridge_handler",
    processor_handler: str = "app.processor_handler",
    runtime: str = "python3.12",
    function_timeout_sec: int | None = None,
    bridge_timeout_sec: int = 60,
    memory_mb: int = 1024,
    maximum_concurrency: int | None = None,
    claim_check_prefix: str | None = None,
    bridge_trigger: BridgeTrigger = "queue",
    bridge_batch_size: int = 100,
    bridge_batching_window_sec: int = 2,
    recovery_handler: str | None = "app.recovery_handler",
    recovery_schedule: str = "rate(15 minutes)",
    stale_upload_age_sec: int = DEFAULT_STALE_UPLOAD_AGE_SEC,
    queue_age_alarm_sec: int | None = None,
    alarm_topic_arn: str | None = None,
) -> str:
    """The SAM template (YAML) for ``config``'s project and branch.

    The template creates the upload bucket (SAM's S3 event needs the bucket in the same
    template) and the output bucket when it is another one. ``function_timeout_sec``
    defaults to one sixth of the queue visibility timeout (AWS's guidance), at most 900.
    ``maximum_concurrency`` (2 to 1000) caps how many processors the queue may run at once.

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
    Raises :class:`ConfigError` for values Lambda or SQS would refuse."""
    output_bucket = output_bucket or upload_bucket
    # Validates the buckets and the prefix the same way as iam_policies does.
    iam_policies(
        config,
        "000000000000",
        "us-east-1",
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        claim_check_prefix=claim_check_prefix,
    )
    sqs = config.sqs
    timeout = function_timeout_sec or default_function_timeout(sqs.visibility_timeout_sec)
    problems = _problems(
        sqs.visibility_timeout_sec,
        timeout,
        bridge_timeout_sec=bridge_timeout_sec,
        memory_mb=memory_mb,
        maximum_concurrency=maximum_concurrency,
        bridge_trigger=bridge_trigger,
        bridge_batch_size=bridge_batch_size,
        bridge_batching_window_sec=bridge_batching_window_sec,
        stale_upload_age_sec=stale_upload_age_sec,
    )
    if problems:
        raise ConfigError("cannot write the SAM template: " + "; ".join(problems))

    names = config.queue_names
    fanout = fanout_resources(
        config,
        partition="${AWS::Partition}",
        region="${AWS::Region}",
        account_id="${AWS::AccountId}",
    )
    policies = build_policies(
        names,
        branch=config.branch,
        partition="${AWS::Partition}",
        region="${AWS::Region}",
        account_id="${AWS::AccountId}",
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        claim_check_prefix=claim_check_prefix,
        fanout=fanout,
    )
    tags = [
        {"Key": "project", "Value": config.project},
        {"Key": "branch", "Value": config.branch},
        {"Key": "managed-by", "Value": "transflow"},
    ]
    fifo = {
        "FifoQueue": True,
        "ContentBasedDeduplication": False,
        "MaximumMessageSize": sqs.max_message_bytes,
        "Tags": tags,
    }
    processing_arn = (
        "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + names.processing
    )
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
        "TRANSFLOW_UPLOAD_BUCKET": upload_bucket,
        "TRANSFLOW_OUTPUT_BUCKET": output_bucket,
    }
    if fanout is not None:
        # The processor publishes progress to the topic; load_config reads it back.
        environment[ENV_PROGRESS_TOPIC_ARN] = (
            {"Ref": "ProgressTopic"}
            if config.sqs.progress_topic_arn is None
            else config.sqs.progress_topic_arn
        )
    uploads_rule = {"Name": "prefix", "Value": f"uploads/{config.branch}/"}
    bridge_policy = policies.bridge
    if bridge_trigger == "queue":
        bridge_events: dict[str, Any] = {
            "Uploads": {
                "Type": "SQS",
                "Properties": {
                    "Queue": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
                    "BatchSize": bridge_batch_size,
                    "MaximumBatchingWindowInSeconds": bridge_batching_window_sec,
                    # A notification that failed is retried alone; the rest are deleted.
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                },
            }
        }
    else:
        # No uploads queue to consume from.
        bridge_policy = PolicyDocument(
            Version=policies.bridge["Version"],
            Statement=[
                s for s in policies.bridge["Statement"] if s["Sid"] != "ConsumeUploadNotifications"
            ],
        )
        # Lossy: S3 invokes asynchronously, and an event that fails Lambda's two retries
        # is dropped (docs/deployment.md).
        bridge_events = {
            "Uploads": {
                "Type": "S3",
                "Properties": {
                    "Bucket": {"Ref": "UploadBucket"},
                    "Events": "s3:ObjectCreated:*",
                    "Filter": {"S3Key": {"Rules": [uploads_rule]}},
                },
            }
        }
    scaling = (
        {"ScalingConfig": {"MaximumConcurrency": maximum_concurrency}}
        if maximum_concurrency is not None
        else {}
    )
    resources: dict[str, Any] = {
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.dlq,
                **fifo,
                "MessageRetentionPeriod": _RETENTION_MAX,
                "RedriveAllowPolicy": {
                    "redrivePermission": "byQueue",
                    "sourceQueueArns": [{"Fn::Sub": processing_arn}],
                },
            },
        },
        "ProcessingQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.processing,
                **fifo,
                "MessageRetentionPeriod": sqs.retention_sec,
                "VisibilityTimeout": sqs.visibility_timeout_sec,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                    "maxReceiveCount": sqs.max_receive_count,
                },
            },
        },
        "ProgressQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.progress,
                **fifo,
                "MessageRetentionPeriod": sqs.retention_sec,
            },
        },
        "UploadBucket": _bucket(upload_bucket),
        "BridgeRole": _role("transflow-bridge", bridge_policy),
        "ProcessorRole": _role("transflow-processor", policies.processor),
        "BridgeFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "FunctionName": _function_name(config, "bridge"),
                "CodeUri": code_uri,
                "Handler": bridge_handler,
                "Runtime": runtime,
                "Timeout": bridge_timeout_sec,
                "MemorySize": 256,
                "Role": {"Fn::GetAtt": ["BridgeRole", "Arn"]},
                "Environment": {"Variables": environment},
                "Events": bridge_events,
            },
        },
        "ProcessorFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "FunctionName": _function_name(config, "processor"),
                "CodeUri": code_uri,
                "Handler": processor_handler,
                "Runtime": runtime,
                "Timeout": timeout,
                "MemorySize": memory_mb,
                "Role": {"Fn::GetAtt": ["ProcessorRole", "Arn"]},
                "Environment": {"Variables": environment},
                "Events": {
                    "Jobs": {
                        "Type": "SQS",
                        "Properties": {
                            "Queue": {"Fn::GetAtt": ["ProcessingQueue", "Arn"]},
                            "BatchSize": sqs.batch_size,
                            # A failed job fails alone (and the rest of its group), not
                            # the whole batch.
                            "FunctionResponseTypes": ["ReportBatchItemFailures"],
                            **scaling,
                        },
                    }
                },
            },
        },
    }
    if output_bucket != upload_bucket:
        resources["OutputBucket"] = _bucket(output_bucket)
    if fanout is not None and config.sqs.progress_topic_arn is None:
        # Fan-out mode: every hub instance subscribes its own queue to this topic.
        resources["ProgressTopic"] = {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": config.topic_name,
                "FifoTopic": True,
                "ContentBasedDeduplication": False,
                "Tags": tags,
            },
        }
    _add_operations(
        resources,
        config,
        environment,
        upload_bucket=upload_bucket,
        code_uri=code_uri,
        runtime=runtime,
        bridge_trigger=bridge_trigger,
        bridge_timeout_sec=bridge_timeout_sec,
        recovery_policy=policies.recovery,
        recovery_handler=recovery_handler,
        recovery_schedule=recovery_schedule,
        stale_upload_age_sec=stale_upload_age_sec,
        queue_age_alarm_sec=queue_age_alarm_sec or sqs.visibility_timeout_sec,
        alarm_topic_arn=alarm_topic_arn,
    )
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"transflow pipeline for {config.project}, branch {config.branch}",
        "Resources": resources,
        "Outputs": {
            "ProcessingQueueUrl": {"Value": {"Ref": "ProcessingQueue"}},
            "ProgressQueueUrl": {"Value": {"Ref": "ProgressQueue"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "BridgeFunctionArn": {"Value": {"Fn::GetAtt": ["BridgeFunction", "Arn"]}},
            **(
                {
                    "UploadsQueueUrl": {"Value": {"Ref": "UploadsQueue"}},
                    "UploadsDeadLetterQueueUrl": {"Value": {"Ref": "UploadsDeadLetterQueue"}},
                }
                if bridge_trigger == "queue"
                else {}
            ),
            "ProcessorFunctionArn": {"Value": {"Fn::GetAtt": ["ProcessorFunction", "Arn"]}},
            **(
                {"ProgressTopicArn": {"Value": environment[ENV_PROGRESS_TOPIC_ARN]}}
                if fanout is not None
                else {}
            ),
        },
    }
    header = (
        "# Generated by transflow (transflow sam). Deploy with: sam deploy --guided\n"
        f"# Queues: {names.processing}, {names.progress}, {names.dlq}\n"
        + (
            f"# S3 notifications: {names.uploads} (dead letters: {names.uploads_dlq})\n"
            if bridge_trigger == "queue"
            else "# S3 invokes the bridge directly: a notification that fails is lost\n"
        )
    )
    return header + dump(template)
