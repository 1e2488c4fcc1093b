"""The ``transflow`` operator commands under enforced IAM, signed as the operator user
with exactly its generated policy: each command does its work and nothing is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.integration.iam.conftest import OUTPUTS, PROJECT, IamWorld
from tests.integration.iam.work import dead_letter, deploy
from transflow.cli.app import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def transflow(
    world: IamWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[IamWorld, list[str]]:
    """The command's common arguments; the environment holds no key yet."""
    config = tmp_path / "transflow.config.json"
    config.write_text(f'{{"project": "{PROJECT}", "sqs": {{}}}}')
    monkeypatch.chdir(tmp_path)
    return world, ["--config", str(config), "--endpoint-url", world.endpoint]


def test_queues_ensure_creates_then_corrects_the_queues(
    transflow: tuple[IamWorld, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world, common = transflow
    operator = world.user("operator", world.policies().operator)
    operator.use_in_environment(monkeypatch)
    assert main(["queues", "ensure", *common]) == 0
    created = capsys.readouterr().out
    assert created.count("created  ") == 3, created
    # Someone shortened the retention and dropped a tag by hand: ensure puts them back.
    sqs = world.harness.sqs()
    url = sqs.get_queue_url(QueueName=f"{PROJECT}-main-progress.fifo")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["managed-by"])
    assert main(["queues", "ensure", *common]) == 0
    changed = capsys.readouterr().out
    assert "changed  " in changed
    assert "MessageRetentionPeriod" in changed, changed
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"]["managed-by"] == "transflow"
    assert operator.denied == []


def test_status_and_every_dlq_command(
    transflow: tuple[IamWorld, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world, common = transflow
    stack = deploy(world)
    stack.roles["operator"].use_in_environment(monkeypatch)
    dead_letter(stack, "up-cli")

    assert main(["status", "--cloudwatch", "--json", *common]) == 1  # one dead letter
    assert '"dlq"' in capsys.readouterr().out
    assert main(["dlq", "peek", "--output-bucket", OUTPUTS, *common]) == 0
    peeked = capsys.readouterr().out
    assert "up-cli" in peeked
    assert "DECODE_FAILED: not audio" in peeked
    assert main(["dlq", "announce", "--output-bucket", OUTPUTS, *common]) == 0
    assert "announced 1 dead-lettered upload(s)" in capsys.readouterr().out
    assert main(["dlq", "redrive", *common]) == 0
    assert "1 job(s)" in capsys.readouterr().out
    dead_letter(stack, "up-cli-2")
    assert main(["dlq", "purge", "--yes", *common]) == 0
    assert "purged" in capsys.readouterr().out
    assert main(["status", *common]) == 0
    assert stack.denied() == {}
