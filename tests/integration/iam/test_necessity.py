"""Every statement of every generated policy is needed: without it, its role's work fails
on a refused call. (A statement nobody needs would be a grant too many.)"""

from __future__ import annotations

import botocore.exceptions
import pytest

from tests.integration.iam.conftest import IamWorld
from tests.integration.iam.fanout_work import FANOUT_CONFIG, FANOUT_WORK, deploy_fanout
from tests.integration.iam.work import WORK, deploy
from transflow import TransflowConfig, TransflowError
from transflow.ops.iam import iam_policies

NEEDED = [
    ("bridge", "ReadUploads"),
    ("bridge", "ListUploads"),
    ("bridge", "QueueJobs"),
    ("bridge", "StoreClaimChecks"),
    ("bridge", "ConsumeUploadNotifications"),
    ("processor", "ConsumeJobs"),
    ("processor", "PublishProgress"),
    ("processor", "ReadUploads"),
    ("processor", "WriteOutputs"),
    ("processor", "ReadClaimChecks"),
    ("stream", "ConsumeProgress"),
    ("stream", "LeaseProgressQueue"),
    ("stream", "ReadStatusRecords"),
    ("operator", "ManageQueues"),
    ("operator", "RecoverFailedJobs"),
    ("operator", "RequeueJobs"),
    ("operator", "AnnounceFailedJobs"),
    ("operator", "ReadStatusRecords"),
    ("operator", "ReadClaimChecks"),
    ("operator", "ReadQueueMetrics"),
    ("recovery", "PeekDeadLetters"),
    ("recovery", "AnnounceErrors"),
    ("recovery", "ListUploads"),
    ("recovery", "ReadUploads"),
    ("recovery", "ReadClaimChecks"),
    ("recovery", "WriteStatusRecords"),
    ("uploads", "SignUploads"),
    ("uploads", "ManageMultipartUploads"),
    ("uploads", "CheckCompletedUploads"),
]

# Needed on AWS, not provable on moto: without s3:ListBucket, AWS answers a GetObject of a
# missing key (the first run's status record; for the recovery's sweep, that of an upload
# nobody processed) 403 instead of 404; moto answers 404 anyway.
NOT_PROVABLE_ON_MOTO = [("processor", "ListOwnOutputs"), ("recovery", "ListOwnOutputs")]

# Fan-out mode: the statements that differ (the processor's PublishProgress to the shared
# queue gives way to the topic's; the stream role's ConsumeProgress to its instance queues).
NEEDED_FANOUT = [
    ("processor", "PublishProgressToTopic"),
    ("stream", "ConsumeInstanceQueues"),
    ("stream", "ManageInstanceQueues"),
    ("stream", "SubscribeInstanceQueues"),
    ("stream", "FindTopicSubscriptions"),
    ("stream", "LeaveProgressTopic"),
    ("stream", "FindInstanceQueues"),
    ("operator", "ManageProgressTopic"),
    ("operator", "AnnounceFailedJobsToTopic"),
    ("operator", "SweepInstanceQueues"),
    ("operator", "SweepSubscriptions"),
    ("operator", "LeaveProgressTopic"),
    ("operator", "FindInstanceQueues"),
    ("recovery", "AnnounceErrorsToTopic"),
]


def test_every_statement_is_proven_needed_or_says_why_not() -> None:
    policies = iam_policies(
        TransflowConfig(project="p"), "123456789012", "us-east-1", upload_bucket="bucket"
    )
    generated = {
        (role, statement["Sid"])
        for role, document in policies.by_role().items()
        for statement in document["Statement"]
    }
    assert generated == set(NEEDED) | set(NOT_PROVABLE_ON_MOTO)
    fanout = iam_policies(FANOUT_CONFIG, "123456789012", "us-east-1", upload_bucket="bucket")
    in_fanout = {
        (role, statement["Sid"])
        for role, document in fanout.by_role().items()
        for statement in document["Statement"]
    }
    replaced = {
        ("processor", "PublishProgress"),
        ("stream", "ConsumeProgress"),
        ("stream", "LeaseProgressQueue"),
    }
    assert in_fanout == (generated - replaced) | set(NEEDED_FANOUT)


@pytest.mark.parametrize(("role", "sid"), NEEDED)
def test_without_the_statement_the_role_is_refused(world: IamWorld, role: str, sid: str) -> None:
    stack = deploy(world, **{role: sid})
    with pytest.raises((AssertionError, botocore.exceptions.ClientError, TransflowError)):
        WORK[role](stack)
    assert stack.roles[role].denied, f"{role} failed without {sid}, but not on a refusal"
    others = {name: calls for name, calls in stack.denied().items() if name != role}
    assert others == {}


@pytest.mark.parametrize(("role", "sid"), NEEDED_FANOUT)
def test_without_the_fanout_statement_the_role_is_refused(
    world: IamWorld, role: str, sid: str
) -> None:
    fan = deploy_fanout(world, **{role: sid})
    with pytest.raises((AssertionError, botocore.exceptions.ClientError, TransflowError)):
        FANOUT_WORK[role](fan)
    assert fan.stack.roles[role].denied, f"{role} failed without {sid}, but not on a refusal"
    others = {name: calls for name, calls in fan.stack.denied().items() if name != role}
    assert others == {}
