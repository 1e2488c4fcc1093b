"""Least-privilege IAM policy documents for each part of the pipeline.

Each document names the exact queue ARNs and bucket prefixes of one project and branch and
only the actions that part really calls. Pure: no AWS.
"""

from __future__ import annotations

import json
import re

import attrs
from typing_extensions import NotRequired, TypedDict

from transflow._wire.keys import STATUS_RECORD_NAME
from transflow._wire.naming import INSTANCE_ID_CHARS, QueueNames
from transflow.config import TransflowConfig
from transflow.errors import ConfigError

__all__ = ["FanOutResources", "IamPolicies", "PolicyDocument", "PolicyStatement", "iam_policies"]

_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b")

# What each part calls, and why it needs it:
# - ReceiveMessage, DeleteMessage, GetQueueAttributes: what a Lambda event source mapping
#   (or a poller) needs to consume a queue; ChangeMessageVisibility puts a failed message
#   back with a backoff instead of a re-send.
CONSUME = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
]
# SendMessageBatch is authorised as sqs:SendMessage.
SEND = ["sqs:SendMessage"]
# What a hub does to its own instance queue in fan-out mode, and what a sweep does to a
# crashed instance's: create (then read its ARN, set its policy), the heartbeat (set an
# attribute, tag with last-seen), read the tag, find by name, delete.
MANAGE_INSTANCE_QUEUES = [
    "sqs:CreateQueue",
    "sqs:GetQueueUrl",
    "sqs:SetQueueAttributes",
    "sqs:TagQueue",
    "sqs:ListQueueTags",
    "sqs:DeleteQueue",
]
# A sweep reads each queue's LastModifiedTimestamp (the heartbeat SQS stamps) and its tags.
SWEEP_INSTANCE_QUEUES = [
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
    "sqs:ListQueueTags",
    "sqs:DeleteQueue",
]
# The hub lease on the shared progress queue: read the tag, write the next beat, give it up.
HUB_LEASE = ["sqs:ListQueueTags", "sqs:TagQueue", "sqs:UntagQueue"]


@attrs.frozen
class FanOutResources:
    """The resources of fan-out mode: the progress topic's ARN and the instance queues'
    name prefix (``{project}-{branch}-progress-``)."""

    topic_arn: str
    instance_prefix: str


DEFAULT_CLAIM_PREFIX = "transflow/claims/"
"""Where :class:`~transflow.GroupingBridge` stores claim checks by default, in the upload
bucket (its ``claim_prefix``; a test keeps the two equal)."""


class Condition(TypedDict, total=False):
    """The condition operators the documents use."""

    StringLike: dict[str, list[str]]
    StringEquals: dict[str, list[str]]


class PolicyStatement(TypedDict):
    """One statement of an IAM policy document."""

    Sid: str
    Effect: str
    Action: list[str]
    Resource: list[str]
    Condition: NotRequired[Condition]


class PolicyDocument(TypedDict):
    """An IAM policy document (the ``Version``/``Statement`` JSON)."""

    Version: str
    Statement: list[PolicyStatement]


@attrs.frozen
class IamPolicies:
    """The policy documents of one project and branch, one per part of the pipeline.

    ``bridge``: the S3-triggered function that queues jobs. ``processor``: the function (or
    worker) that runs them. ``stream``: the server that reads progress for SSE clients.
    ``operator``: the ``transflow`` command (queues, DLQ redrive, status). ``recovery``: the
    scheduled function that announces dead-lettered jobs and fails stale uploads
    (:func:`transflow.ops.announce.announce`,
    :func:`transflow.ops.recovery.sweep_stale_uploads`). ``uploads``: the host's backend
    that signs upload tickets (:func:`transflow.create_upload`) and serves the multipart
    endpoints (:class:`transflow.MultipartEndpoint`); presigned requests act as it."""

    bridge: PolicyDocument
    processor: PolicyDocument
    stream: PolicyDocument
    operator: PolicyDocument
    recovery: PolicyDocument
    uploads: PolicyDocument

    def by_role(self) -> dict[str, PolicyDocument]:
        """The documents by role name."""
        return {
            "bridge": self.bridge,
            "processor": self.processor,
            "stream": self.stream,
            "operator": self.operator,
            "recovery": self.recovery,
            "uploads": self.uploads,
        }

    def to_json(self, role: str, *, indent: int | None = 2) -> str:
        """One document as JSON, ready for ``aws iam put-role-policy``."""
        return json.dumps(self.by_role()[role], indent=indent)


def _statement(
    sid: str, actions: list[str], resources: list[str], condition: Condition | None = None
) -> PolicyStatement:
    statement = PolicyStatement(Sid=sid, Effect="Allow", Action=actions, Resource=resources)
    if condition is not None:
        statement["Condition"] = condition
    return statement


def _document(*statements: PolicyStatement) -> PolicyDocument:
    return PolicyDocument(Version="2012-10-17", Statement=list(statements))


@attrs.frozen
class _Grants:
    """What every role's statements are built from: the branch's resources, and the
    statements several roles share (each method makes a fresh one)."""

    names: QueueNames
    branch: str
    partition: str
    region: str
    account_id: str
    upload_bucket: str
    output_bucket: str
    claim_check_prefix: str | None
    fanout: FanOutResources | None

    def queue(self, name: str) -> str:
        return f"arn:{self.partition}:sqs:{self.region}:{self.account_id}:{name}"

    def objects(self, bucket: str, prefix: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}/{prefix}*"

    @property
    def uploads(self) -> str:
        return f"uploads/{self.branch}/"

    @property
    def outputs(self) -> str:
        return f"outputs/{self.branch}/"

    @property
    def status_records(self) -> str:
        return (
            f"arn:{self.partition}:s3:::{self.output_bucket}/{self.outputs}*/{STATUS_RECORD_NAME}"
        )

    def read_uploads(self) -> PolicyStatement:
        return _statement(
            "ReadUploads", ["s3:GetObject"], [self.objects(self.upload_bucket, self.uploads)]
        )

    def read_claims(self) -> PolicyStatement:
        # Whoever receives a job's message (processor, operator, recovery) reads its claim.
        return _statement("ReadClaimChecks", ["s3:GetObject"], [self.claims()])

    def claims(self) -> str:
        # Where the bridge puts a job too large for one message: by default beside the
        # upload (the GroupingBridge's claim_prefix, then the branch), else the prefix given,
        # in the output bucket.
        if self.claim_check_prefix is None:
            return self.objects(self.upload_bucket, f"{DEFAULT_CLAIM_PREFIX}{self.branch}/")
        return self.objects(self.output_bucket, self.claim_check_prefix)

    def list_outputs(self) -> PolicyStatement:
        # Without s3:ListBucket a HeadObject of a missing key answers 403 instead of 404, and
        # a processor checking whether an output already exists cannot tell "absent" from
        # "denied".
        return _statement(
            "ListOwnOutputs",
            ["s3:ListBucket"],
            [f"arn:{self.partition}:s3:::{self.output_bucket}"],
            Condition(StringLike={"s3:prefix": [f"{self.outputs}*"]}),
        )

    def list_uploads(self) -> PolicyStatement:
        return _statement(
            "ListUploads",
            ["s3:ListBucket"],
            [f"arn:{self.partition}:s3:::{self.upload_bucket}"],
            Condition(StringLike={"s3:prefix": [f"{self.uploads}*"]}),
        )

    def read_status(self) -> PolicyStatement:
        # StatusRecordSnapshots (docs/streaming.md): the snapshot of an upload the hub has
        # not seen comes from its status record; the stream role reads those and no other
        # output.
        return _statement("ReadStatusRecords", ["s3:GetObject"], [self.status_records])

    def instances(self, fanout: FanOutResources) -> str:
        # Exactly `{prefix}` + the instance id + `.fifo` ("?" is one character in IAM), so
        # the queues of a branch whose name merely starts the same way stay out of reach.
        return self.queue(fanout.instance_prefix + "?" * INSTANCE_ID_CHARS + ".fifo")

    def list_queues(self) -> PolicyStatement:
        # ListQueues has no resource-level permissions beyond the account's queues.
        return _statement("FindInstanceQueues", ["sqs:ListQueues"], [self.queue("*")])


def _unsubscribe() -> PolicyStatement:
    # Unsubscribe has no resource-level permissions on AWS; SNS itself lets only the
    # subscription's or the topic's owner remove an SQS subscription.
    return _statement("LeaveProgressTopic", ["sns:Unsubscribe"], ["*"])


def build_policies(
    names: QueueNames,
    *,
    branch: str,
    partition: str,
    region: str,
    account_id: str,
    upload_bucket: str,
    output_bucket: str,
    claim_check_prefix: str | None = None,
    fanout: FanOutResources | None = None,
) -> IamPolicies:
    """The documents, without checking the identifiers (the SAM template passes
    ``${AWS::AccountId}``-style placeholders). With ``fanout``, progress goes through the
    SNS FIFO topic to one queue per hub instance."""
    grants = _Grants(
        names,
        branch,
        partition,
        region,
        account_id,
        upload_bucket,
        output_bucket,
        claim_check_prefix,
        fanout,
    )
    return IamPolicies(
        bridge=_document(*_bridge(grants)),
        processor=_document(*_processor(grants)),
        stream=_document(*_stream(grants)),
        operator=_document(*_operator(grants)),
        recovery=_document(*_recovery(grants)),
        uploads=_document(*_uploads(grants)),
    )


def _bridge(g: _Grants) -> list[PolicyStatement]:
    return [
        # HeadObject (the upload's metadata) is authorized as s3:GetObject.
        g.read_uploads(),
        # A whole upload is complete when the last file's notification finds every file
        # under the upload's prefix (ListObjectsV2).
        g.list_uploads(),
        _statement("QueueJobs", SEND, [g.queue(g.names.processing)]),
        _statement("StoreClaimChecks", ["s3:PutObject"], [g.claims()]),
        # S3 notifies the standard queue {project}-{branch}-uploads; Lambda's event source
        # mapping polls it with the function's role (a direct S3 trigger does not use it).
        _statement("ConsumeUploadNotifications", CONSUME, [g.queue(g.names.uploads)]),
    ]


def _uploads(g: _Grants) -> list[PolicyStatement]:
    files = g.objects(g.upload_bucket, g.uploads)
    return [
        # The browser's presigned POST and part PUTs act as the signer; CreateMultipartUpload,
        # UploadPart and CompleteMultipartUpload are all authorized as s3:PutObject.
        _statement("SignUploads", ["s3:PutObject"], [files]),
        # Resume (ListParts) and abort, by the multipart endpoints.
        _statement(
            "ManageMultipartUploads",
            ["s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
            [files],
        ),
        # After completion: HeadObject checks the size S3 stored (authorized as
        # s3:GetObject), and a file over the limit is deleted.
        _statement("CheckCompletedUploads", ["s3:GetObject", "s3:DeleteObject"], [files]),
    ]


def _processor(g: _Grants) -> list[PolicyStatement]:
    if g.fanout is None:
        publish_progress = _statement("PublishProgress", SEND, [g.queue(g.names.progress)])
    else:
        # PublishBatch is authorised as sns:Publish.
        publish_progress = _statement(
            "PublishProgressToTopic", ["sns:Publish"], [g.fanout.topic_arn]
        )
    return [
        _statement("ConsumeJobs", CONSUME, [g.queue(g.names.processing)]),
        publish_progress,
        g.read_uploads(),
        _statement(
            "WriteOutputs",
            ["s3:GetObject", "s3:PutObject"],
            [g.objects(g.output_bucket, g.outputs)],
        ),
        g.list_outputs(),
        g.read_claims(),
    ]


def _stream(g: _Grants) -> list[PolicyStatement]:
    if g.fanout is None:
        progress = g.queue(g.names.progress)
        return [
            _statement("ConsumeProgress", CONSUME, [progress]),
            # The hub lease (transflow.streaming.lease): a tag on the progress queue says which
            # hub reads it, so a second stream process refuses loudly instead of splitting the
            # events.
            _statement("LeaseProgressQueue", HUB_LEASE, [progress]),
            g.read_status(),
        ]
    instances = g.instances(g.fanout)
    topic = g.fanout.topic_arn
    return [
        _statement("ConsumeInstanceQueues", CONSUME, [instances]),
        _statement("ManageInstanceQueues", MANAGE_INSTANCE_QUEUES, [instances]),
        # Only SQS subscriptions of instance queues: a compromised stream host cannot add an
        # https, e-mail or foreign-queue subscription that reads the branch.
        _statement(
            "SubscribeInstanceQueues",
            ["sns:Subscribe"],
            [topic],
            Condition(
                StringEquals={"sns:Protocol": ["sqs"]},
                StringLike={"sns:Endpoint": [instances]},
            ),
        ),
        # The sweep of crashed instances lists the topic's subscriptions.
        _statement("FindTopicSubscriptions", ["sns:ListSubscriptionsByTopic"], [topic]),
        _unsubscribe(),
        g.list_queues(),
        g.read_status(),
    ]


def _operator(g: _Grants) -> list[PolicyStatement]:
    processing, progress, dlq = (
        g.queue(g.names.processing),
        g.queue(g.names.progress),
        g.queue(g.names.dlq),
    )
    statements = [
        _statement(
            "ManageQueues",
            [
                "sqs:CreateQueue",
                "sqs:GetQueueUrl",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:ListQueueTags",
                "sqs:TagQueue",
                "sqs:DeleteQueue",
            ],
            [processing, progress, dlq],
        ),
        _statement(
            "RecoverFailedJobs",
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:PurgeQueue",
                "sqs:StartMessageMoveTask",
                "sqs:ListMessageMoveTasks",
                "sqs:CancelMessageMoveTask",
            ],
            [dlq],
        ),
        _statement("RequeueJobs", SEND, [processing]),
        # `transflow dlq announce`: the final error event of a dead-lettered upload.
        _statement("AnnounceFailedJobs", SEND, [progress]),
        _statement("ReadStatusRecords", ["s3:GetObject"], [g.objects(g.output_bucket, g.outputs)]),
        # `dlq peek` and `dlq announce` show the job a claim check in the DLQ stands for.
        g.read_claims(),
        # CloudWatch has no resource-level permissions for reading metrics.
        _statement("ReadQueueMetrics", ["cloudwatch:GetMetricStatistics"], ["*"]),
    ]
    if g.fanout is None:
        return statements
    topic = g.fanout.topic_arn
    return [
        *statements,
        # `transflow queues ensure`: CreateTopic with tags needs sns:TagResource too.
        _statement("ManageProgressTopic", ["sns:CreateTopic", "sns:TagResource"], [topic]),
        # `transflow dlq announce`: in fan-out mode the final error goes to the topic.
        _statement("AnnounceFailedJobsToTopic", ["sns:Publish"], [topic]),
        # `transflow queues sweep`: the queues of crashed hub instances.
        _statement("SweepInstanceQueues", SWEEP_INSTANCE_QUEUES, [g.instances(g.fanout)]),
        _statement("SweepSubscriptions", ["sns:ListSubscriptionsByTopic"], [topic]),
        _unsubscribe(),
        g.list_queues(),
    ]


def _recovery(g: _Grants) -> list[PolicyStatement]:
    # Its own role, not the operator's: it runs unattended on a schedule, so it gets neither
    # the operator's purge, redrive and queue management nor a write to job outputs.
    statements = [
        # announce peeks at the DLQ (receive, then visibility 0 again; an empty answer asks
        # the queue's depth before a long poll) and never deletes.
        _statement(
            "PeekDeadLetters",
            ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
            [g.queue(g.names.dlq)],
        ),
        # The final error events of dead-lettered jobs and of stale uploads.
        _statement("AnnounceErrors", SEND, [g.queue(g.names.progress)]),
        # The sweep lists the branch's uploads and reads each quiet folder's metadata.
        g.list_uploads(),
        g.read_uploads(),
        # announce shows the job a claim check in the DLQ stands for.
        g.read_claims(),
        # The sweep reads a status record that is usually absent: 404, not 403.
        g.list_outputs(),
        _statement("WriteStatusRecords", ["s3:GetObject", "s3:PutObject"], [g.status_records]),
    ]
    if g.fanout is not None:
        # The scheduled recovery's final errors go where progress goes: the topic.
        statements.append(
            _statement("AnnounceErrorsToTopic", ["sns:Publish"], [g.fanout.topic_arn])
        )
    return statements


def iam_policies(
    config: TransflowConfig,
    account_id: str,
    region: str,
    *,
    upload_bucket: str,
    output_bucket: str | None = None,
    partition: str = "aws",
    claim_check_prefix: str | None = None,
) -> IamPolicies:
    """Least-privilege policy documents for the bridge, the processor, the stream handler,
    the operator and the scheduled recovery of ``config``'s project and branch.

    ``output_bucket`` defaults to ``upload_bucket``. ``claim_check_prefix`` is the key prefix
    (in the output bucket) where the bridge stores jobs too large for a message, when its
    ``claim_bucket``/``claim_prefix`` are set so; by default they go to
    ``transflow/claims/{branch}/`` in the upload bucket. In fan-out mode
    (``sqs.progressFanout: "sns"`` or ``sqs.progressTopicArn``) the processor publishes to the
    progress topic, and the stream handler manages its own instance queue (and sweeps
    crashed instances'), subscribed to the topic. Raises :class:`ConfigError` for a
    malformed account id, region, partition or bucket name."""
    problems = []
    if not _ACCOUNT.fullmatch(account_id):
        problems.append(f"account id {account_id!r} must be 12 digits")
    if not _REGION.fullmatch(region):
        problems.append(f"region {region!r} is not an AWS region name such as 'us-east-1'")
    if partition not in _PARTITIONS:
        problems.append(f"partition {partition!r} must be one of {', '.join(_PARTITIONS)}")
    problems.extend(bucket_problems(upload_bucket, output_bucket, claim_check_prefix))
    output_bucket = output_bucket or upload_bucket
    if problems:
        raise ConfigError("cannot write IAM policies: " + "; ".join(problems))
    return build_policies(
        config.queue_names,
        branch=config.branch,
        partition=partition,
        region=region,
        account_id=account_id,
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        claim_check_prefix=claim_check_prefix,
        fanout=fanout_resources(config, partition=partition, region=region, account_id=account_id),
    )


def bucket_problems(
    upload_bucket: str, output_bucket: str | None, claim_check_prefix: str | None
) -> list[str]:
    """What is wrong with the bucket names and the claim check prefix given to
    :func:`iam_policies` or the SAM template (an empty list when nothing is)."""
    # The output bucket is named in a problem only when it was given: a user who passed one
    # bucket must not read about a second.
    buckets = {"upload bucket": upload_bucket}
    if output_bucket and output_bucket != upload_bucket:
        buckets["output bucket"] = output_bucket
    problems = [
        f"{what} {bucket!r} is not an S3 bucket name (3 to 63 lowercase letters, digits, "
        "'.' and '-')"
        for what, bucket in buckets.items()
        if not _BUCKET.fullmatch(bucket) or ".." in bucket
    ]
    if claim_check_prefix is not None and (
        not claim_check_prefix or "*" in claim_check_prefix or "?" in claim_check_prefix
    ):
        problems.append(f"claim check prefix {claim_check_prefix!r} must be a plain key prefix")
    return problems


def fanout_resources(
    config: TransflowConfig, *, partition: str, region: str, account_id: str
) -> FanOutResources | None:
    """The topic and instance queue prefix of ``config`` in fan-out mode, else None (the
    configured ``sqs.progressTopicArn`` as given, or the topic ``ensure_topic`` makes)."""
    if not config.sqs.fanout:
        return None
    topic = config.sqs.progress_topic_arn or (
        f"arn:{partition}:sns:{region}:{account_id}:{config.topic_name}"
    )
    return FanOutResources(topic, config.instance_queue_prefix)
