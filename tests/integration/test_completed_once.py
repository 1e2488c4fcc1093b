"""On the moto server (issue 13): a job completes once, however many workers run it.

Two processors run the same job, as when heartbeats failed past the visibility timeout and
a second worker received the message: the status record is written conditionally (S3
``If-Match``/``If-None-Match``, which moto enforces), so one completes and the other sends
no ``done`` event, no webhook and no completion record.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    drain_events,
    get_json,
    make_buckets,
    make_queues,
    put_upload,
    wav_bytes,
)
from transflow import (
    JobCancelledError,
    JobProcessor,
    LeaseLostError,
    ProcessingJob,
    ProgressQueue,
    ProgressType,
    StepContext,
    TemplateRegistry,
)
from transflow._aws.retry import RetryPolicy
from transflow._wire.keys import job_output_prefix
from transflow.processing.attempt import begin
from transflow.processing.status import AssemblyStatus
from transflow.processing.storage import S3JobStorage
from transflow.processing.webhooks import WebhookResult, WebhookSender

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
WAIT = 20  # seconds: a deadline, never a sleep


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


class CountingWebhooks(WebhookSender):
    """The real sender's interface, counting deliveries instead of posting them."""

    def __init__(self) -> None:
        super().__init__(allow_http=True, allowed_networks=["127.0.0.0/8"])  # a loopback URL
        self.sent: list[bytes] = []

    def deliver(
        self, url: str, body: bytes, secret: str | None = None, *, delivery_id: str | None = None
    ) -> WebhookResult:
        self.sent.append(body)
        return WebhookResult(delivered=True, attempts=1, status=200)


@attrs.define
class CountingStorage(S3JobStorage):
    """S3 storage that counts the completion records S3 accepted."""

    completed: list[int] = attrs.field(factory=list)

    def put_status_record(
        self, bucket: str, key: str, record: AssemblyStatus, *, if_match: str | None
    ) -> str:
        etag = super().put_status_record(bucket, key, record, if_match=if_match)
        if record.completed:
            self.completed.append(record.attempt)
        return etag


@attrs.define
class Gate:
    """Holds each attempt inside its step until the test lets it go."""

    entered: dict[int, threading.Event] = attrs.field(factory=dict)
    go: dict[int, threading.Event] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for attempt in (1, 2):
            self.entered[attempt] = threading.Event()
            self.go[attempt] = threading.Event()

    def step(self, ctx: StepContext) -> None:
        self.entered[ctx.attempt].set()
        assert self.go[ctx.attempt].wait(WAIT)
        out = ctx.path("out.txt")
        out.write_text(f"attempt {ctx.attempt}")
        ctx.upload_result(out, "out.txt")


def race_setup(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> tuple[ProcessingJob, Gate, CountingWebhooks, CountingStorage, list[JobProcessor]]:
    gate = Gate()
    registry = TemplateRegistry()
    template = registry.template(
        "race", webhook_url="http://127.0.0.1:9/hook", webhook_secret="s" * 32
    )
    template.step("work")(gate.step)
    hooks = CountingWebhooks()
    storage = CountingStorage(aws.s3())
    processors = [
        JobProcessor(
            registry,
            s3_client=aws.s3(),
            upload_bucket=UPLOADS,
            sqs_client=aws.sqs(),
            progress=ProgressQueue(queues.progress),
            output_bucket=OUTPUTS,
            retry_policy=FAST,
            webhooks=hooks,
            storage=storage,
            max_receive_count=1,  # the error webhook too would go at once
        )
        for _ in range(2)
    ]
    job = attrs.evolve(
        put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123"), template_id="race"
    )
    return job, gate, hooks, storage, processors


def run_in_thread(
    proc: JobProcessor, job: ProcessingJob, attempt: int, outcome: dict[int, object]
) -> threading.Thread:
    def run() -> None:
        try:
            outcome[attempt] = proc.run_job(job, attempt=attempt)
        except Exception as exc:
            outcome[attempt] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("first_to_finish", [2, 1])
def test_two_processors_racing_one_job_complete_it_once(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, first_to_finish: int
) -> None:
    job, gate, hooks, storage, (p1, p2) = race_setup(aws, queues, s3)
    outcome: dict[int, object] = {}
    # Attempt 1 runs; its lease runs out; attempt 2 (another worker) starts the same job.
    a = run_in_thread(p1, job, 1, outcome)
    assert gate.entered[1].wait(WAIT)
    b = run_in_thread(p2, job, 2, outcome)
    assert gate.entered[2].wait(WAIT)
    threads = {1: a, 2: b}
    second_to_finish = 3 - first_to_finish
    gate.go[first_to_finish].set()
    threads[first_to_finish].join(WAIT)
    gate.go[second_to_finish].set()
    threads[second_to_finish].join(WAIT)

    done = [e for e in drain_events(sqs, queues.progress) if e.type is ProgressType.DONE]
    assert len(done) == 1
    assert len(hooks.sent) == 1
    assert storage.completed == [2]  # one completion record: the delivery that holds it
    record = get_json(s3, OUTPUTS, job_output_prefix(job) + "status.json")
    assert record["ok"] == "ASSEMBLY_COMPLETED"
    assert record["attempt"] == 2
    assert isinstance(outcome[2], AssemblyStatus)
    if first_to_finish == 2:
        # Attempt 1 finds this very job completed: a duplicate, its message is deleted.
        assert isinstance(outcome[1], AssemblyStatus)
        assert outcome[1].attempt == 2
    else:
        # Attempt 1 finds the job held by attempt 2: it stops, leaving all to attempt 2.
        assert isinstance(outcome[1], LeaseLostError)


def test_a_worker_that_cannot_confirm_its_lease_stops_before_completing(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    job, gate, hooks, storage, (proc, _other) = race_setup(aws, queues, s3)
    gate.go[1].set()
    held = iter([True, True, False])  # held at the start and the step; lost at the end

    with pytest.raises(JobCancelledError) as stopped:
        proc.run_job(job, attempt=1, lease_held=lambda: next(held, False))

    assert isinstance(stopped.value, LeaseLostError)
    assert "could not confirm its lease" in str(stopped.value)
    assert gate.entered[1].is_set()
    types = [e.type for e in drain_events(sqs, queues.progress)]
    assert ProgressType.DONE not in types
    assert ProgressType.ERROR not in types
    assert hooks.sent == []
    assert storage.completed == []
    record = get_json(s3, OUTPUTS, job_output_prefix(job) + "status.json")
    assert record["ok"] == "ASSEMBLY_EXECUTING"  # left for the delivery that holds it


def test_a_completed_record_is_never_overwritten_by_a_late_start(
    aws: LocalAws, queues: Queues, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A redelivery: attempt 1 found an earlier delivery's record, read it, and was slow to
    # write "executing" over it; meanwhile attempt 2 completed. The write conditional on
    # the ETag it read refuses attempt 1's stale "executing" record.
    job, gate, hooks, storage, (p1, p2) = race_setup(aws, queues, s3)
    gate.go[1].set()
    gate.go[2].set()
    key = job_output_prefix(job) + "status.json"
    storage.put_status_record(OUTPUTS, key, begin(job, 1, now="earlier").record, if_match=None)
    original = S3JobStorage.read_status
    reads: list[Any] = []

    def read_then_let_attempt_2_finish(self: S3JobStorage, bucket: str, key: str) -> Any:
        stored = original(self, bucket, key)
        if not reads:
            reads.append(stored)
            p2.run_job(job, attempt=2)
        return stored

    monkeypatch.setattr(CountingStorage, "read_status", read_then_let_attempt_2_finish)
    with pytest.raises(LeaseLostError):
        p1.run_job(job, attempt=1)

    assert storage.completed == [2]
    assert len(hooks.sent) == 1
    record = get_json(s3, OUTPUTS, job_output_prefix(job) + "status.json")
    assert (record["ok"], record["attempt"]) == ("ASSEMBLY_COMPLETED", 2)


def test_a_first_delivery_that_finds_the_job_completed_replays_it(
    aws: LocalAws, queues: Queues, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No record yet, so attempt 1 writes "executing" without reading; just before its write,
    # attempt 2 completed. The write conditional on there being no record refuses it, and
    # attempt 1 reads the completed record and replays it: no second completion, no webhook.
    job, gate, hooks, storage, (p1, p2) = race_setup(aws, queues, s3)
    gate.go[1].set()
    gate.go[2].set()
    original = CountingStorage.put_status_record
    writes: list[str | None] = []

    def let_attempt_2_finish_first(
        self: CountingStorage,
        bucket: str,
        key: str,
        record: AssemblyStatus,
        *,
        if_match: str | None,
    ) -> str:
        writes.append(if_match)
        if len(writes) == 1:
            p2.run_job(job, attempt=2)
        return original(self, bucket, key, record, if_match=if_match)

    monkeypatch.setattr(CountingStorage, "put_status_record", let_attempt_2_finish_first)
    replayed = p1.run_job(job, attempt=1)

    assert (replayed.ok, replayed.attempt) == ("ASSEMBLY_COMPLETED", 2)
    assert storage.completed == [2]
    assert len(hooks.sent) == 1
    assert not gate.entered[1].is_set()  # attempt 1 never ran the step
    record = get_json(s3, OUTPUTS, job_output_prefix(job) + "status.json")
    assert (record["ok"], record["attempt"]) == ("ASSEMBLY_COMPLETED", 2)
