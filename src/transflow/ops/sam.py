"""An AWS SAM template that deploys one project and branch of the pipeline.

The queues (as :mod:`transflow.ops.provision` makes them), the upload bucket with the bridge
function on its ``uploads/{branch}/`` prefix, the processing function with an SQS event
source mapping (batch size, ReportBatchItemFailures, maximum concurrency), their
environment and least-privilege roles (:mod:`transflow.ops.iam`). Pure: builds text.
"""

from __future__ import annotations

import hashlib
from typing import Any

from transflow.config import TransflowConfig
from transflow.errors import ConfigError
from transflow.ops._yaml import dump
from transflow.ops.iam import PolicyDocument, build_policies, iam_policies

__all__ = ["MAX_FUNCTION_TIMEOUT_SEC", "default_function_timeout", "sam_template"]

MAX_FUNCTION_TIMEOUT_SEC = 900
"""Lambda's limit on a function's timeout, in seconds."""
_MAX_FUNCTION_NAME = 64
_RETENTION_MAX = 14 * 24 * 3600


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
) -> str:
    """The SAM template (YAML) for ``config``'s project and branch.

    The template creates the upload bucket (SAM's S3 event needs the bucket in the same
    template) and the output bucket when it is another one. ``function_timeout_sec``
    defaults to one sixth of the queue visibility timeout (AWS's guidance), at most 900.
    ``maximum_concurrency`` (2 to 1000) caps how many processors the queue may run at once.
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
    problems = []
    if not 1 <= timeout <= MAX_FUNCTION_TIMEOUT_SEC:
        problems.append(f"function timeout {timeout}s must be from 1 to 900 seconds")
    elif timeout > sqs.visibility_timeout_sec:
        problems.append(
            f"function timeout {timeout}s is longer than sqs.visibilityTimeoutSec "
            f"({sqs.visibility_timeout_sec}s), which Lambda refuses for an SQS trigger"
        )
    if not 1 <= bridge_timeout_sec <= MAX_FUNCTION_TIMEOUT_SEC:
        problems.append(f"bridge timeout {bridge_timeout_sec}s must be from 1 to 900 seconds")
    if not 128 <= memory_mb <= 10_240:
        problems.append(f"memory {memory_mb} MB must be from 128 to 10240")
    if maximum_concurrency is not None and not 2 <= maximum_concurrency <= 1000:
        problems.append(f"maximum concurrency {maximum_concurrency} must be from 2 to 1000")
    if problems:
        raise ConfigError("cannot write the SAM template: " + "; ".join(problems))

    names = config.queue_names
    policies = build_policies(
        names,
        branch=config.branch,
        partition="${AWS::Partition}",
        region="${AWS::Region}",
        account_id="${AWS::AccountId}",
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        claim_check_prefix=claim_check_prefix,
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
    environment = {
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
        "BridgeRole": _role("transflow-bridge", policies.bridge),
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
                "Events": {
                    "Uploads": {
                        "Type": "S3",
                        "Properties": {
                            "Bucket": {"Ref": "UploadBucket"},
                            "Events": "s3:ObjectCreated:*",
                            "Filter": {
                                "S3Key": {
                                    "Rules": [
                                        {"Name": "prefix", "Value": f"uploads/{config.branch}/"}
                                    ]
                                }
                            },
                        },
                    }
                },
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
            "ProcessorFunctionArn": {"Value": {"Fn::GetAtt": ["ProcessorFunction", "Arn"]}},
        },
    }
    header = (
        "# Generated by transflow (transflow sam). Deploy with: sam deploy --guided\n"
        f"# Queues: {names.processing}, {names.progress}, {names.dlq}\n"
    )
    return header + dump(template)
