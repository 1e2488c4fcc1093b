"""The pipeline under enforced IAM: every role does its work with exactly the policy
``transflow iam-policy`` generates, and nothing it does is refused."""

from __future__ import annotations

import json

import pytest

from tests.integration.iam.conftest import OUTPUTS, IamWorld
from tests.integration.iam.fanout_work import FANOUT_WORK, deploy_fanout
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
