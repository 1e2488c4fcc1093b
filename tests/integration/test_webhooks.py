"""Webhooks to a real local HTTP server: one signed POST per terminal state, retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    make_buckets,
    make_queues,
    put_upload,
    wav_bytes,
)
from tests.support.webhooks import Receiver, webhook_receiver
from transflow import (
    JobFailedError,
    JobProcessor,
    ProgressQueue,
    StepContext,
    TemplateRegistry,
    WebhookSender,
)
from transflow.processing.webhooks import verify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

SECRET = "hook-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as state:
        yield state


# The receivers listen on loopback over http: both refused unless allowed.
FAST = WebhookSender(
    timeout=5,
    attempts=4,
    initial_wait=0.001,
    max_wait=0.01,
    allow_http=True,
    allowed_networks=["127.0.0.0/8"],
)


def test_sender_retries_5xx_and_429_but_not_400(receiver: Receiver) -> None:
    receiver.statuses = [500, 429, 200]
    result = FAST.deliver(receiver.url, b'{"a":1}', SECRET)
    assert (result.delivered, result.attempts, result.status) == (True, 3, 200)

    receiver.statuses = [400]
    result = FAST.deliver(receiver.url, b'{"a":1}', SECRET)
    assert (result.delivered, result.attempts, result.status) == (False, 1, 400)
    assert len(receiver.received) == 4


def test_sender_retries_network_errors_and_never_raises() -> None:
    result = FAST.deliver("http://127.0.0.1:9/closed", b"{}", SECRET)
    assert not result.delivered
    assert result.attempts == 4
    assert result.error


def _processor(aws: LocalAws, registry: TemplateRegistry, sqs: SQSClient) -> JobProcessor:
    queues = make_queues(sqs)
    return JobProcessor(
        registry,
        s3_client=aws.s3(),
        upload_bucket=UPLOADS,
        sqs_client=sqs,
        progress=ProgressQueue(queues.progress),
        output_bucket=OUTPUTS,
        max_receive_count=2,
        webhooks=FAST,
    )


def test_one_signed_post_per_terminal_state(
    aws: LocalAws, sqs: SQSClient, s3: S3Client, receiver: Receiver
) -> None:
    make_buckets(s3)
    registry = TemplateRegistry()
    ok = registry.template("ok", webhook_url=receiver.url, webhook_secret=SECRET)
    bad = registry.template("bad", webhook_url=receiver.url, webhook_secret=SECRET)

    @ok.step("copy")
    def copy(ctx: StepContext) -> None:
        ctx.upload_result(ctx.inputs[0].path, "copy.wav")

    @bad.step("fail")
    def fail(ctx: StepContext) -> None:
        raise RuntimeError("decoder crashed")

    proc = _processor(aws, registry, sqs)
    job = put_upload(s3, "up-ok", [("a.wav", wav_bytes(0.05))], None)
    receiver.statuses = [500]  # the first try fails, the retry lands
    proc.run_job(attrs.evolve(job, template_id="ok"))
    proc.run_job(attrs.evolve(job, template_id="ok"), attempt=2)  # re-delivery: no new POST

    failing = put_upload(s3, "up-bad", [("a.wav", wav_bytes(0.05))], None)
    for attempt in (1, 2):  # maxReceiveCount 2: only the last attempt posts the error
        with pytest.raises(JobFailedError):
            proc.run_job(attrs.evolve(failing, template_id="bad"), attempt=attempt)

    bodies = [json.loads(body) for body, _ in receiver.received]
    assert [(b["upload_id"], b["ok"], b["error"]) for b in bodies] == [
        ("up-ok", "ASSEMBLY_COMPLETED", None),
        ("up-ok", "ASSEMBLY_COMPLETED", None),  # the retried POST after the 500
        ("up-bad", None, "STEP_FAILED"),
    ]
    assert bodies[2]["message"] == "decoder crashed"
    assert bodies[2]["attempt"] == 2
    assert bodies[0]["results"]["copy"][0]["key"] == "outputs/main/up-ok/copy.wav"
    for body, headers in receiver.received:
        verify(SECRET, body, headers)
        assert headers["Content-Type"] == "application/json"
