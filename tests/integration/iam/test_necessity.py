"""Every statement of every generated policy is needed: without it, its role's work fails
on a refused call. (A statement nobody needs would be a grant too many.)"""

from __future__ import annotations

import botocore.exceptions
import pytest

from tests.integration.iam.conftest import IamWorld
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
]

# Needed on AWS, not provable on moto: without s3:ListBucket, AWS answers a GetObject of a
# missing key (the first run's status record; for the recovery's sweep, that of an upload
# nobody processed) 403 instead of 404; moto answers 404 anyway.
NOT_PROVABLE_ON_MOTO = [("processor", "ListOwnOutputs"), ("recovery", "ListOwnOutputs")]


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


@pytest.mark.parametrize(("role", "sid"), NEEDED)
def test_without_the_statement_the_role_is_refused(world: IamWorld, role: str, sid: str) -> None:
    stack = deploy(world, **{role: sid})
    with pytest.raises((AssertionError, botocore.exceptions.ClientError, TransflowError)):
        WORK[role](stack)
    assert stack.roles[role].denied, f"{role} failed without {sid}, but not on a refusal"
    others = {name: calls for name, calls in stack.denied().items() if name != role}
    assert others == {}
