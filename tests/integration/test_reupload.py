"""A file re-posted with the same ticket is processed again; the same content is not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.bridge import (
    bridge,
    lambda_event,
    notifying_bucket,
    post_files,
    receive_notifications,
)
from tests.support.pipeline import drain_events, lambda_record, make_queues
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressQueue,
    StepContext,
    TemplateRegistry,
    UploadFile,
    create_upload,
)
from transflow._aws.claimcheck import decode_job_message
from transflow._aws.retry import RetryPolicy
from transflow.cli.local import LocalAws, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)


def queued_jobs(sqs: SQSClient, url: str) -> list[tuple[str, ProcessingJob]]:
    found = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            job = decode_job_message(message["Body"])
            assert isinstance(job, ProcessingJob)
            found.append((message["MessageId"], job))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_a_file_reposted_with_new_content_runs_again(aws: LocalAws) -> None:
    s3 = aws.s3(local_client_config(signature_version="s3v4"))
    sqs = aws.sqs()
    events_url = notifying_bucket(sqs, s3)
    queues = make_queues(sqs)
    seen: list[bytes] = []
    registry = TemplateRegistry()

    @registry.template("read").step("read")
    def read(ctx: StepContext) -> None:
        seen.append(ctx.inputs[0].path.read_bytes())

    processor = JobProcessor(
        registry,
        s3_client=s3,
        upload_bucket="uploads",
        sqs_client=sqs,
        progress=ProgressQueue(queues.progress),
        output_bucket="uploads",
        retry_policy=FAST,
    )
    the_bridge = bridge(sqs, s3, queues.processing, upload_bucket="uploads")
    ticket = create_upload(
        s3, bucket="uploads", branch="main", template_id="read", files=[UploadFile("a.txt")]
    )

    def post_and_process(content: bytes) -> list[ProcessingJob]:
        post_files(ticket.files, [content])
        notifications = receive_notifications(sqs, events_url, 1)
        assert the_bridge.lambda_handler(lambda_event(notifications)) == {"batchItemFailures": []}
        jobs = queued_jobs(sqs, queues.processing)
        for message_id, job in jobs:
            response = processor.handle(
                {"Records": [lambda_record(job.to_json(), message_id, job.upload_id)]}
            )
            assert response == {"batchItemFailures": []}
        return [job for _, job in jobs]

    (first,) = post_and_process(b"version one")
    (second,) = post_and_process(b"version two")
    # The same ticket, the same key: the job names the content it is for.
    assert first.objects[0].key == second.objects[0].key
    assert first.objects[0].etag != second.objects[0].etag
    assert seen == [b"version one", b"version two"]  # not "already completed"
    events = drain_events(sqs, queues.progress)
    done = [e for e in events if e.type.value == "done"]
    assert len(done) == 2
    assert not any(e.extra.get("replayed") for e in done)

    # The very same job delivered again is still answered from the status record.
    processor.handle({"Records": [lambda_record(second.to_json(), "again", second.upload_id)]})
    assert seen == [b"version one", b"version two"]
    (replayed,) = [e for e in drain_events(sqs, queues.progress) if e.type.value == "done"]
    assert replayed.extra.get("replayed") is True
