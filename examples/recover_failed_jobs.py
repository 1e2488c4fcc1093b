"""Provision a branch's queues, watch a poison job land in the dead-letter queue, see why,
and send it back: what an operator does, from Python.

Run it against the embedded endpoint (needs the ``local`` extra):

    python -m examples.recover_failed_jobs
"""

from __future__ import annotations

from transflow import (
    ProcessingJob,
    S3ObjectRef,
    SqsConfig,
    TransflowConfig,
    count_requests,
    ensure_queues,
)
from transflow.cli.local import LocalAws
from transflow.ops.dlq import peek
from transflow.ops.health import health, queue_stats
from transflow.ops.redrive import redrive


def main() -> tuple[bool, bool]:
    """Returns whether the branch was healthy with a failed job, and after the redrive."""
    config = TransflowConfig(project="myapp", branch="main", sqs=SqsConfig(max_receive_count=2))
    job = ProcessingJob(
        upload_id="upload-abc",
        template_id="thumbnails",
        objects=[S3ObjectRef("uploads", "uploads/main/upload-abc/photo.jpg")],
        branch="main",
    )
    with LocalAws() as aws:
        sqs, s3 = aws.sqs(), aws.s3()
        urls = ensure_queues(sqs, config)
        sqs.send_message(
            QueueUrl=urls.processing,
            MessageBody=job.to_json(),
            MessageGroupId=job.upload_id,
            MessageDeduplicationId=f"{job.upload_id}:1",
        )
        # A processor that keeps failing: each failure goes back through visibility (0 here
        # to skip the wait); after maxReceiveCount receives SQS moves the job to the DLQ.
        for _ in range(config.sqs.max_receive_count + 1):
            sqs.receive_message(QueueUrl=urls.processing, VisibilityTimeout=0)
        # The processor recorded why in the upload's status record.
        s3.create_bucket(Bucket="outputs")
        s3.put_object(
            Bucket="outputs",
            # The status record's key: outputs/{branch}/{uploadId}/status.json (templates.md).
            Key=f"outputs/main/{job.upload_id}/status.json",
            Body=b'{"ok": "ASSEMBLY_FAILED", "error": "STEP_FAILED", "message": "truncated"}',
        )

        before = health(queue_stats(sqs, urls))
        for problem in before.problems:
            print(f"unhealthy [{problem.code}] {problem.message}")
        for failed in peek(sqs, urls.dlq, 10, s3=s3, output_bucket="outputs"):
            print(
                f"failed: {failed.upload_id} after {failed.receive_count} receives: {failed.reason}"
            )
        with count_requests(sqs) as requests:
            report = redrive(sqs, urls.dlq, urls.processing, use_move_task=False)
        print(f"redrive: {report.moved} job(s) back in {requests.total('sqs')} SQS requests")
        after = health(queue_stats(sqs, urls))
        print("healthy" if after.healthy else "still unhealthy")
    return before.healthy, after.healthy


if __name__ == "__main__":
    main()
