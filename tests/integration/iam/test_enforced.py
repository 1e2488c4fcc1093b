"""The pipeline under enforced IAM: every role does its work with exactly the policy
``transflow iam-policy`` generates, and nothing it does is refused."""

from __future__ import annotations

import json
import re

import botocore.exceptions
import pytest

from tests.integration.iam.conftest import ACCOUNT, OUTPUTS, REGION, UPLOADS, IamWorld
from tests.integration.iam.fanout_work import FANOUT_CONFIG, FANOUT_WORK, deploy_fanout
from tests.integration.iam.work import (
    BRANCH,
    WORK,
    deploy,
    processor,
    progress_types,
    run_bridge,
    run_processor,
    sse_server,
    upload,
)
from tests.support.streaming import SseClient
from transflow._wire.keys import status_key
from transflow.ops.iam import PolicyDocument, PolicyStatement, iam_policies
from transflow.processing.storage import read_status_record as load_status


def test_an_upload_reaches_the_browser_with_every_role_on_its_own_policy(
    world: IamWorld,
) -> None:
    stack = deploy(world)
    ticket = upload(stack, ["one.wav", "two.wav"])
    channel = f"upload:{BRANCH}:{ticket.upload_id}"
    with sse_server(stack) as base:
        client = SseClient(f"{base}/?channel={channel}&token={ticket.stream_token}").start()
        try:
            client.wait_for(lambda events: any(e.type == "snapshot" for e in events))
            assert run_bridge(stack, 2) == {"batchItemFailures": []}
            assert run_processor(stack, processor(stack)) == {"batchItemFailures": []}
            client.wait_for(lambda _: "done" in progress_types(client))
        finally:
            client.close()
    assert client.snapshot()[0].type == "snapshot"
    kinds = progress_types(client)
    assert (kinds[0], kinds[-1]) == ("start", "done"), kinds
    assert "output" in kinds
    last = json.loads(client.snapshot()[-1].data)
    assert last["uploadId"] == ticket.upload_id
    status = load_status(world.harness.s3(), OUTPUTS, status_key(BRANCH, ticket.upload_id))
    assert status is not None
    assert status.completed
    assert stack.denied() == {}


@pytest.mark.parametrize("claim_check_prefix", [None, "claims/"])
@pytest.mark.parametrize("role", list(WORK))
def test_each_role_does_its_work_unrefused(
    world: IamWorld, role: str, claim_check_prefix: str | None
) -> None:
    stack = deploy(world, claim_check_prefix=claim_check_prefix)
    WORK[role](stack)
    assert stack.denied() == {}


@pytest.mark.parametrize("role", list(FANOUT_WORK))
def test_each_role_does_its_fanout_work_unrefused(world: IamWorld, role: str) -> None:
    fan = deploy_fanout(world)
    FANOUT_WORK[role](fan)
    assert fan.stack.denied() == {}


# -- issue 21: what the stream role may read and subscribe --------------------------------


def test_the_stream_role_reads_status_records_and_no_other_output(world: IamWorld) -> None:
    stack = deploy(world)
    harness = world.harness.s3()
    readable = [status_key(BRANCH, "up-a"), status_key(BRANCH, "up-b", "u-7")]
    unreadable = [
        (OUTPUTS, f"outputs/{BRANCH}/up-a/report.json"),
        (OUTPUTS, f"outputs/{BRANCH}/users/u-7/up-b/thumb.jpg"),
        (OUTPUTS, "outputs/other-branch/up-c/status.json"),
        (UPLOADS, f"uploads/{BRANCH}/up-a/a.wav"),
    ]
    for key in readable:
        harness.put_object(Bucket=OUTPUTS, Key=key, Body=b"{}")
    for bucket, key in unreadable:
        harness.put_object(Bucket=bucket, Key=key, Body=b"secret")
    stream = stack.roles["stream"]
    for key in readable:
        assert stream.s3().get_object(Bucket=OUTPUTS, Key=key)["Body"].read() == b"{}"
    assert stream.denied == []
    for bucket, key in unreadable:
        with pytest.raises(botocore.exceptions.ClientError) as denied:
            stream.s3().get_object(Bucket=bucket, Key=key)
        assert denied.value.response["Error"]["Code"] == "AccessDenied", key
    assert stream.denied == ["s3:GetObject"] * len(unreadable)


def _subscribe_statement(policy: PolicyDocument) -> PolicyStatement:
    (statement,) = [s for s in policy["Statement"] if "sns:Subscribe" in s["Action"]]
    return statement


def _string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: ``*`` any run of characters, ``?`` exactly one, case-sensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def test_the_stream_role_subscribes_only_sqs_instance_queues() -> None:
    # moto does not enforce conditions of identity policies (its evaluator gets no request
    # context but sts:ExternalId, and knows only StringEquals), so a live https Subscribe is
    # not refused there. The document is checked as a document: sns:Protocol with moto's
    # own StringEquals evaluator fed the context AWS would give, sns:Endpoint's StringLike
    # by IAM's wildcard rules.
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    fanout = iam_policies(FANOUT_CONFIG, ACCOUNT, REGION, upload_bucket=UPLOADS)
    statement = _subscribe_statement(fanout.stream)
    assert statement["Action"] == ["sns:Subscribe"]  # nothing else under the condition
    instances = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{FANOUT_CONFIG.instance_queue_prefix}"
    pattern = instances + "?" * 12 + ".fifo"
    assert statement["Condition"] == {
        "StringEquals": {"sns:Protocol": ["sqs"]},
        "StringLike": {"sns:Endpoint": [pattern]},
    }
    protocol_only = IAMPolicyStatement(
        {**statement, "Condition": {"StringEquals": statement["Condition"]["StringEquals"]}}
    )

    def protocol(value: str) -> PermissionResult:
        context = {"sns:Protocol": value}
        return protocol_only.is_action_permitted(
            "sns:Subscribe", statement["Resource"][0], None, context
        )

    assert protocol("sqs") is PermissionResult.PERMITTED
    for refused in ("https", "http", "email", "email-json", "lambda", "sms", "firehose"):
        assert protocol(refused) is PermissionResult.DENIED, refused
    assert _string_like(pattern, f"{instances}0123456789ab.fifo")
    for endpoint in (
        f"arn:aws:sqs:{REGION}:999999999999:steal.fifo",
        f"arn:aws:sqs:{REGION}:999999999999:{FANOUT_CONFIG.instance_queue_prefix}0123456789ab.fifo",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:iamapp-main-progress.fifo",
        f"{instances}0123456789ab-x.fifo",
        "https://attacker.example/hook",
    ):
        assert not _string_like(pattern, endpoint), endpoint
