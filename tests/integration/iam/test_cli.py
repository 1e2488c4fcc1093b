"""The ``transflow`` operator commands under enforced IAM, signed as the operator user
with exactly its generated policy: each command does its work and nothing is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from tests.integration.iam.conftest import OUTPUTS, PROJECT, IamWorld, Principal
from tests.integration.iam.work import dead_letter, deploy
from transflow.cli.app import main

if TYPE_CHECKING:
    from pathlib import Path


@attrs.define
class Cli:
    world: IamWorld
    common: list[str]
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def sign_as(self, principal: Principal) -> None:
        principal.use_in_environment(self.monkeypatch)

    def run(self, *args: str) -> tuple[int, str]:
        """The exit status and standard output of ``transflow *args``."""
        code = main([*args, *self.common])
        return code, self.capsys.readouterr().out


@pytest.fixture
def cli(
    world: IamWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    config = tmp_path / "transflow.config.json"
    config.write_text(f'{{"project": "{PROJECT}", "sqs": {{}}}}')
    monkeypatch.chdir(tmp_path)
    return Cli(
        world, ["--config", str(config), "--endpoint-url", world.endpoint], monkeypatch, capsys
    )


def test_queues_ensure_creates_then_corrects_the_queues(cli: Cli) -> None:
    operator = cli.world.user("operator", cli.world.policies().operator)
    cli.sign_as(operator)
    code, created = cli.run("queues", "ensure")
    assert code == 0
    assert created.count("created  ") == 3, created
    # Someone shortened the retention and dropped a tag by hand: ensure puts them back.
    sqs = cli.world.harness.sqs()
    url = sqs.get_queue_url(QueueName=f"{PROJECT}-main-progress.fifo")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["managed-by"])
    code, changed = cli.run("queues", "ensure")
    assert code == 0
    assert "MessageRetentionPeriod" in changed, changed
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"]["managed-by"] == "transflow"
    assert operator.denied == []


def test_status_and_every_dlq_command(cli: Cli) -> None:
    stack = deploy(cli.world)
    cli.sign_as(stack.roles["operator"])
    dead_letter(stack, "up-cli")

    code, out = cli.run("status", "--cloudwatch", "--json")
    assert (code, '"dlq"' in out) == (1, True)  # unhealthy: one dead letter
    code, out = cli.run("dlq", "peek", "--output-bucket", OUTPUTS)
    assert (code, "up-cli" in out, "DECODE_FAILED: not audio" in out) == (0, True, True), out
    code, out = cli.run("dlq", "announce", "--output-bucket", OUTPUTS)
    assert (code, "announced 1 dead-lettered upload(s)" in out) == (0, True), out
    code, out = cli.run("dlq", "redrive")
    assert (code, "1 job(s)" in out) == (0, True), out
    dead_letter(stack, "up-cli-2")
    code, out = cli.run("dlq", "purge", "--yes")
    assert (code, "purged" in out) == (0, True), out
    assert cli.run("status")[0] == 0
    assert stack.denied() == {}
