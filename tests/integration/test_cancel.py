"""On the moto server (issue 24): cancelling an upload.

``cancel_upload`` marks the status record ``ASSEMBLY_CANCELED`` with a conditional write;
the processor stops before its next step with a final ``cancelled`` event (its message
deleted), the bridge does not queue a cancelled upload, and cancellation racing completion
ends in exactly one of ``done`` or ``cancelled``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    drain_events,
    get_json,
    lambda_record,
    list_keys,
    make_buckets,
    make_queues,
    put_upload,
)
from transflow import (
    CancelOutcome,
    CancelRefusedError,
    GroupingBridge,
    JobProcessor,
    ProcessingJob,
    ProgressQueue,
    ProgressType,
    StepContext,
    TemplateRegistry,
    cancel_request,
    cancel_upload,
    issue_stream_token,
)
from transflow._aws.metering import count_requests
from transflow._aws.retry import RetryPolicy
from transflow._wire.keys import job_output_prefix
from transflow.cli.app import main

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
WAIT = 20  # seconds: a deadline, never a sleep
SECRET = "k" * 24 + "Zq9-Xw7_Lm3/Pr5+"


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


@attrs.define
class Steps:
    """A three-step template whose first step can cancel its own upload (as a user
    clicking cancel while it runs), counting the steps that ran."""

    s3: S3Client
    checkpoint: bool = True
    cancel_in: str | None = None
    delete_outputs: bool = False
    ran: list[str] = attrs.field(factory=list)

    def registry(self) -> TemplateRegistry:
        registry = TemplateRegistry()
        template = registry.template("three")
        for name in ("one", "two", "three"):
            template.step(name, checkpoint=self.checkpoint)(self._step(name))
        return registry

    def _step(self, name: str) -> Any:
        def run(ctx: StepContext) -> None:
            self.ran.append(name)
            out = ctx.path(f"{name}.txt")
            out.write_text(name)
            ctx.upload_result(out, f"{name}.txt")
            if self.cancel_in == name:
                result = cancel_upload(
                    self.s3,
                    bucket=OUTPUTS,
                    branch="main",
                    upload_id=ctx.upload_id,
                    user_id="user123",
                    delete_outputs=self.delete_outputs,
                )
                assert result.outcome is CancelOutcome.CANCELED

        return run


def processor(aws: LocalAws, queues: Queues, registry: TemplateRegistry) -> JobProcessor:
    return JobProcessor(
        registry,
        s3_client=aws.s3(),
        sqs_client=aws.sqs(),
        upload_bucket=UPLOADS,
        progress=ProgressQueue(queues.progress),
        output_bucket=OUTPUTS,
        retry_policy=FAST,
        cancel_check_after=0.0,
    )


def the_job(s3: S3Client, upload_id: str = "upload-1") -> ProcessingJob:
    job = put_upload(s3, upload_id, [("a.txt", b"hello")], "user123")
    return attrs.evolve(job, template_id="three")


def record_of(s3: S3Client, job: ProcessingJob) -> Any:
    return get_json(s3, OUTPUTS, job_output_prefix(job) + "status.json")


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpointed", "not-checkpointed"])
def test_a_job_cancelled_in_a_step_stops_before_the_next_one(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, checkpoint: bool
) -> None:
    # Checkpointed: the checkpoint write after step one is refused (412) and the processor
    # follows the cancellation. Not checkpointed: the check before step two reads it.
    steps = Steps(s3, checkpoint=checkpoint, cancel_in="one")
    job = the_job(s3)

    record = processor(aws, queues, steps.registry()).run_job(job)

    assert steps.ran == ["one"]
    assert record.canceled
    stored = record_of(s3, job)
    assert stored["ok"] == "ASSEMBLY_CANCELED"
    assert [r["key"] for r in stored["results"]["one"]] == [job_output_prefix(job) + "one.txt"]
    types = [e.type for e in drain_events(sqs, queues.progress)]
    assert types[-1] is ProgressType.CANCELLED
    assert ProgressType.DONE not in types
    assert ProgressType.ERROR not in types


def test_a_cancelled_job_message_is_deleted_not_retried(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    steps = Steps(s3, cancel_in="two")
    job = the_job(s3)
    event = {"Records": [lambda_record(job.to_json(), "m-1", job.upload_id)]}

    response = processor(aws, queues, steps.registry()).handle(event)

    assert response["batchItemFailures"] == []  # deleted: not retried, never dead-lettered
    assert steps.ran == ["one", "two"]
    assert record_of(s3, job)["ok"] == "ASSEMBLY_CANCELED"


def test_a_step_failing_after_its_upload_was_cancelled_ends_cancelled_not_failed(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    template = registry.template("three")

    @template.step("one", checkpoint=False)
    def cancel_then_fail(ctx: StepContext) -> None:
        cancel_upload(s3, bucket=OUTPUTS, branch="main", upload_id=ctx.upload_id, user_id="user123")
        raise RuntimeError("the tool saw its input vanish")

    job = the_job(s3)
    event = {"Records": [lambda_record(job.to_json(), "m-1", job.upload_id)]}

    response = processor(aws, queues, registry).handle(event)

    assert response["batchItemFailures"] == []
    types = [e.type for e in drain_events(sqs, queues.progress)]
    assert types[-1] is ProgressType.CANCELLED
    assert ProgressType.ERROR not in types
    assert record_of(s3, job)["ok"] == "ASSEMBLY_CANCELED"


def test_outputs_are_deleted_when_asked(aws: LocalAws, queues: Queues, s3: S3Client) -> None:
    steps = Steps(s3, cancel_in="two", delete_outputs=True)
    job = the_job(s3)

    processor(aws, queues, steps.registry()).run_job(job)

    stored = record_of(s3, job)
    assert sorted(stored["results"]) == ["one", "two"]  # listed, so the operator sees them
    assert stored["delete_outputs"] is True
    assert list_keys(s3, OUTPUTS, job_output_prefix(job)) == [
        job_output_prefix(job) + "status.json"
    ]


def test_a_job_cancelled_before_it_started_runs_no_step(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    steps = Steps(s3)
    job = the_job(s3)
    first = cancel_upload(
        s3, bucket=OUTPUTS, branch="main", upload_id=job.upload_id, user_id="user123"
    )
    again = cancel_upload(
        s3, bucket=OUTPUTS, branch="main", upload_id=job.upload_id, user_id="user123"
    )

    record = processor(aws, queues, steps.registry()).run_job(job)

    assert (first.outcome, again.outcome) == (
        CancelOutcome.CANCELED,
        CancelOutcome.ALREADY_CANCELED,
    )
    assert steps.ran == []
    assert record.canceled
    assert [e.type for e in drain_events(sqs, queues.progress)] == [ProgressType.CANCELLED]


def test_the_check_costs_one_read_per_step_and_none_per_progress_event(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    template = registry.template("three")
    for name in ("one", "two", "three"):

        @template.step(name, checkpoint=False)
        def noisy(ctx: StepContext) -> None:
            for percent in range(0, 100, 10):
                ctx.progress(percent)

    job = the_job(s3)
    fresh = processor(aws, queues, registry)
    cached = attrs.evolve(fresh, cancel_check_after=3600.0)
    with count_requests(fresh.s3_client) as counter:
        fresh.run_job(job)
    fresh_reads = counter.calls[("s3", "GetObject")]
    with count_requests(cached.s3_client) as counter:
        cached.run_job(attrs.evolve(job, fields={"other": "job"}))
    cached_reads = counter.calls[("s3", "GetObject")]

    # A first delivery reads neither the record (its first write is conditional) nor the
    # input (no step takes it); always checking, it reads once before each of the three
    # steps and once before completing; 30 progress events read nothing.
    assert fresh_reads == 3 + 1
    # The second job finds the first one's record (one read after its refused first
    # write); within cancel_check_after of its conditional write, no check reads again.
    assert cached_reads == 1


def test_cancelling_a_completed_upload_is_too_late(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    steps = Steps(s3)
    job = the_job(s3)
    processor(aws, queues, steps.registry()).run_job(job)

    result = cancel_upload(
        s3, bucket=OUTPUTS, branch="main", upload_id=job.upload_id, user_id="user123"
    )

    assert result.too_late
    assert record_of(s3, job)["ok"] == "ASSEMBLY_COMPLETED"


@attrs.define
class Gate:
    """Holds the job inside its last step until the test lets it go."""

    entered: threading.Event = attrs.field(factory=threading.Event)
    go: threading.Event = attrs.field(factory=threading.Event)

    def step(self, ctx: StepContext) -> None:
        self.entered.set()
        assert self.go.wait(WAIT)
        out = ctx.path("out.txt")
        out.write_text("done")
        ctx.upload_result(out, "out.txt")


@pytest.mark.parametrize("winner", ["cancel", "completion"])
def test_cancellation_racing_completion_ends_in_exactly_one_of_done_or_cancelled(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, winner: str
) -> None:
    gate = Gate()
    registry = TemplateRegistry()
    registry.template("three").step("last")(gate.step)
    # No read before completing (the start's write is recent): the conditional completion
    # write alone decides, as when the cancellation lands just after the last check.
    proc = attrs.evolve(processor(aws, queues, registry), cancel_check_after=3600.0)
    job = the_job(s3)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(job=proc.run_job(job)), daemon=True)
    worker.start()
    assert gate.entered.wait(WAIT)
    canceller = aws.s3()
    if winner == "completion":
        # The canceller has read the executing record; the job completes before its
        # conditional write, which S3 refuses: it reads again and finds it too late.
        def complete_the_job_now(**_: Any) -> None:
            if not gate.go.is_set():
                gate.go.set()
                worker.join(WAIT)

        canceller.meta.events.register("after-call.s3.GetObject", complete_the_job_now)
    result = cancel_upload(
        canceller, bucket=OUTPUTS, branch="main", upload_id=job.upload_id, user_id="user123"
    )
    gate.go.set()
    worker.join(WAIT)

    types = [e.type for e in drain_events(sqs, queues.progress)]
    terminal = [t for t in types if t.terminal]
    stored = record_of(s3, job)
    if winner == "cancel":
        assert result.outcome is CancelOutcome.CANCELED
        assert terminal == [ProgressType.CANCELLED]
        assert stored["ok"] == "ASSEMBLY_CANCELED"
        assert [r["name"] for r in stored["results"]["last"]] == ["out.txt"]
        assert outcome["job"].canceled
    else:
        assert result.outcome is CancelOutcome.TOO_LATE
        assert terminal == [ProgressType.DONE]
        assert stored["ok"] == "ASSEMBLY_COMPLETED"
        assert outcome["job"].completed


# -- the bridge ------------------------------------------------------------------------------


def uploaded(s3: S3Client, upload_id: str) -> str:
    key = f"uploads/main/users/user123/{upload_id}/a.txt"
    meta = {"templateid": "three", "uploadid": upload_id, "userid": "user123"}
    s3.put_object(Bucket=UPLOADS, Key=key, Body=b"hello", Metadata=meta)
    return key


def s3_event(key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": UPLOADS}, "object": {"key": key, "size": 5}},
            }
        ]
    }


def test_the_bridge_does_not_queue_a_cancelled_upload(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    cancel_upload(s3, bucket=OUTPUTS, branch="main", upload_id="upload-1", user_id="user123")
    bridge = GroupingBridge(
        sqs,
        s3,
        queue_url=queues.processing,
        upload_bucket=UPLOADS,
        status_bucket=OUTPUTS,
        whole_uploads=False,
    )

    cancelled = bridge.handle(s3_event(uploaded(s3, "upload-1")))
    kept = bridge.handle(s3_event(uploaded(s3, "upload-2")))

    assert cancelled.jobs_sent == 0
    assert [s.reason for s in cancelled.skipped] == [
        "upload upload-1 was cancelled; its job is not queued"
    ]
    assert cancelled.failed == ()
    assert kept.jobs_sent == 1
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=queues.processing, MaxNumberOfMessages=10).get(
            "Messages", []
        )
    ]
    assert [b["uploadId"] for b in bodies] == ["upload-2"]


# -- the CLI and the server function ---------------------------------------------------------


def test_the_cli_cancels_once_and_says_so(
    aws: LocalAws, queues: Queues, s3: S3Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "transflow.config.json"
    config.write_text(
        json.dumps({"project": "shop", "branch": "main", "sqs": {"maxReceiveCount": 2}}),
        encoding="utf-8",
    )
    args = ["cancel", "upload-9", "--bucket", OUTPUTS, "--user", "user123"]
    connection = ["--config", str(config), "--endpoint-url", aws.endpoint_url]

    first = main([*args, *connection])
    first_out = capsys.readouterr().out
    second = main([*args, *connection])
    second_out = capsys.readouterr().out
    bad = main(["cancel", "../x", "--bucket", OUTPUTS, *connection])
    bad_err = capsys.readouterr().err

    assert (first, second, bad) == (0, 0, 2)
    assert "upload upload-9 (branch main): cancelled" in first_out
    assert "already cancelled" in second_out
    assert "is not one" in bad_err
    key = "outputs/main/users/user123/upload-9/status.json"
    assert get_json(s3, OUTPUTS, key)["ok"] == "ASSEMBLY_CANCELED"


def test_the_cli_says_too_late_with_exit_status_1(
    aws: LocalAws, queues: Queues, s3: S3Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = the_job(s3)
    processor(aws, queues, Steps(s3).registry()).run_job(job)
    config = tmp_path / "transflow.config.json"
    config.write_text(
        json.dumps({"project": "shop", "branch": "main", "sqs": {"maxReceiveCount": 2}}),
        encoding="utf-8",
    )

    code = main(
        [
            *("cancel", job.upload_id, "--bucket", OUTPUTS, "--user", "user123"),
            *("--config", str(config), "--endpoint-url", aws.endpoint_url),
        ]
    )

    assert code == 1
    assert "too late" in capsys.readouterr().out


def test_the_server_function_takes_the_upload_stream_token(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    token = issue_stream_token(SECRET, "upload:main:upload-5", user_id="user123")
    other = issue_stream_token(SECRET, "upload:main:upload-6", user_id="user123")

    with pytest.raises(CancelRefusedError) as refused:
        cancel_request(
            s3, bucket=OUTPUTS, branch="main", upload_id="upload-5", token=other, secret=SECRET
        )
    result = cancel_request(
        s3, bucket=OUTPUTS, branch="main", upload_id="upload-5", token=token, secret=SECRET
    )

    assert refused.value.status == 403
    assert result.outcome is CancelOutcome.CANCELED
    key = "outputs/main/users/user123/upload-5/status.json"
    assert get_json(s3, OUTPUTS, key)["ok"] == "ASSEMBLY_CANCELED"


def test_the_server_function_takes_the_authorize_hook(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    asked: list[tuple[Any, str]] = []

    def authorize(request: Any, channel: str) -> bool:
        asked.append((request, channel))
        return bool(request == "alice")

    with pytest.raises(CancelRefusedError) as refused:
        cancel_request(
            s3,
            bucket=OUTPUTS,
            branch="main",
            upload_id="upload-7",
            authorize=authorize,
            request="mallory",
        )
    result = cancel_request(
        s3,
        bucket=OUTPUTS,
        branch="main",
        upload_id="upload-7",
        authorize=authorize,
        request="alice",
        user_id="alice",
    )

    assert refused.value.status == 403
    assert result.outcome is CancelOutcome.CANCELED
    assert asked == [("mallory", "upload:main:upload-7"), ("alice", "upload:main:upload-7")]
    key = "outputs/main/users/alice/upload-7/status.json"
    assert get_json(s3, OUTPUTS, key)["ok"] == "ASSEMBLY_CANCELED"
