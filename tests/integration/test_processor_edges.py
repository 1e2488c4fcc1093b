"""The processor at the edges the soak found: a completion whose answer was lost, and a
delivery given up while its job still ran. Neither may run a job twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest

from transflow import (
    JobCancelledError,
    JobFailedError,
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressQueue,
    S3ObjectRef,
    StepContext,
    TemplateRegistry,
)
from transflow.cli.local import LocalAws, local_client_config
from transflow.processing.storage import read_status_record as load_status

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

STATUS = "outputs/main/up-1/status.json"


@pytest.fixture
def setup(aws: LocalAws, s3: S3Client, sqs: SQSClient) -> tuple[str, ProcessingJob]:
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="outputs")
    s3.put_object(Bucket="uploads", Key="uploads/main/up-1/a.txt", Body=b"abc")
    progress = sqs.create_queue(QueueName="p.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    job = ProcessingJob("up-1", "t", [S3ObjectRef("uploads", "uploads/main/up-1/a.txt")], "main")
    return progress, job


def counting_registry(runs: list[str]) -> TemplateRegistry:
    registry = TemplateRegistry()
    template = registry.template("t", output_bucket="outputs")

    @template.step("one")
    def one(ctx: StepContext) -> None:
        runs.append("one")
        path = ctx.path("out.txt")
        path.write_text("result")
        ctx.upload_result(path, "out.txt")

    @template.step("two")
    def two(_ctx: StepContext) -> None:
        runs.append("two")

    return registry


def events(sqs: SQSClient, url: str) -> list[str]:
    found: list[str] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            found.extend(e.type.value for e in ProgressEvent.all_from_json(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def lose_answers_to_completion(s3: S3Client, *, also_reads: bool) -> list[int]:
    """The completed record's PUT reaches S3, then its answer is lost (the connection drops
    after the request was stored). With ``also_reads``, reading the record back fails too."""
    lost: list[int] = []

    def before_put(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        body = params.get("Body", b"")
        if params.get("Key") == STATUS and b"ASSEMBLY_COMPLETED" in body:
            context["lose_answer"] = True

    def after_put(context: dict[str, Any], **_: Any) -> None:
        if context.get("lose_answer"):
            lost.append(1)
            raise botocore.exceptions.ConnectionClosedError(endpoint_url="s3")

    def before_get(params: dict[str, Any], **_: Any) -> None:
        if lost and params.get("Key") == STATUS:
            raise botocore.exceptions.ConnectionClosedError(endpoint_url="s3")

    s3.meta.events.register("before-parameter-build.s3.PutObject", before_put)
    s3.meta.events.register("after-call.s3.PutObject", after_put)
    if also_reads:
        s3.meta.events.register("before-parameter-build.s3.GetObject", before_get)
    return lost


@pytest.fixture
def bare_s3(aws: LocalAws) -> S3Client:
    """No botocore retries and a body we can read in the hooks."""
    return aws.s3(local_client_config(retries={"mode": "standard", "total_max_attempts": 1}))


def test_a_completion_stored_whose_answer_was_lost_is_a_completion(
    setup: tuple[str, ProcessingJob], bare_s3: S3Client, sqs: SQSClient, s3: S3Client
) -> None:
    progress, job = setup
    runs: list[str] = []
    lost = lose_answers_to_completion(bare_s3, also_reads=False)
    processor = JobProcessor(
        counting_registry(runs),
        s3_client=bare_s3,
        sqs_client=sqs,
        progress=ProgressQueue(progress),
        upload_bucket="uploads",
    )
    record = processor.run_job(job)  # no JobFailedError: the record says it completed
    assert lost == [1]
    assert record.completed
    stored = load_status(s3, "outputs", STATUS)
    assert stored is not None
    assert stored.completed
    assert events(sqs, progress)[-1] == "done"


def test_an_unconfirmed_completion_is_never_overwritten_nor_run_again(
    setup: tuple[str, ProcessingJob], bare_s3: S3Client, sqs: SQSClient, s3: S3Client
) -> None:
    progress, job = setup
    runs: list[str] = []
    lose_answers_to_completion(bare_s3, also_reads=True)
    failing = JobProcessor(
        counting_registry(runs),
        s3_client=bare_s3,
        sqs_client=sqs,
        progress=ProgressQueue(progress),
        upload_bucket="uploads",
    )
    with pytest.raises(JobFailedError):
        failing.run_job(job)
    stored = load_status(s3, "outputs", STATUS)
    assert stored is not None
    assert stored.completed  # the error path did not write over the stored completion
    # The next delivery, on a healthy client, sees the marker: nothing runs twice.
    healthy = JobProcessor(
        counting_registry(runs),
        s3_client=s3,
        sqs_client=sqs,
        progress=ProgressQueue(progress),
        upload_bucket="uploads",
    )
    again = healthy.run_job(job, attempt=2)
    assert again.completed
    assert runs == ["one", "two"]


def test_a_cancelled_delivery_stops_before_the_next_step_and_records_nothing(
    setup: tuple[str, ProcessingJob], sqs: SQSClient, s3: S3Client
) -> None:
    progress, job = setup
    runs: list[str] = []
    processor = JobProcessor(
        counting_registry(runs),
        s3_client=s3,
        sqs_client=sqs,
        progress=ProgressQueue(progress),
        upload_bucket="uploads",
    )
    with pytest.raises(JobCancelledError, match="before step 'one'"):
        # Given up once the first step ran (the poller's handler timeout, say).
        processor.run_job(job, cancelled=lambda: bool(runs))
    assert runs == ["one"]
    stored = load_status(s3, "outputs", STATUS)
    assert stored is not None
    assert not stored.completed
    assert stored.error is None  # no error recorded: another delivery may be running it
    assert "error" not in events(sqs, progress)


def test_a_missing_output_bucket_is_one_line_per_attempt_not_a_traceback(
    setup: tuple[str, ProcessingJob], sqs: SQSClient, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    progress, job = setup
    registry = TemplateRegistry()
    registry.template("t").step("one")(lambda _ctx: None)
    processor = JobProcessor(
        registry,
        s3_client=s3,
        sqs_client=sqs,
        progress=ProgressQueue(progress),
        upload_bucket="uploads",
        output_bucket="nobucket",
        max_receive_count=3,
    )
    with pytest.raises(JobFailedError):
        processor.run_job(job)
    unwritten = [r for r in caplog.records if "status record was not written" in r.getMessage()]
    assert len(unwritten) == 1
    # Before: the ~30-line chained NoSuchBucket traceback, without the bucket's name.
    assert unwritten[0].exc_info is None
    assert "'nobucket': NoSuchBucket" in unwritten[0].getMessage()
