"""Queue a processing job on a FIFO queue and read it back: what transflow does today.

Run it against the embedded endpoint (needs the ``local`` extra):

    python -m examples.queue_a_job
"""

from __future__ import annotations

from transflow import ProcessingJob, S3ObjectRef, UserContext, count_requests, queue_names
from transflow.cli.local import LocalAws


def main() -> ProcessingJob:
    names = queue_names("myapp", "feature-login-page")
    job = ProcessingJob(
        upload_id="upload-abc",
        template_id="audio-processing",
        objects=[S3ObjectRef("uploads", "uploads/feature-login-page/upload-abc/song.mp3")],
        branch="feature-login-page",
        fields={"slug": "intro"},
        user=UserContext("user123", permissions=["upload"]),
    )
    with LocalAws() as aws:
        sqs = aws.sqs()
        url = sqs.create_queue(QueueName=names.processing, Attributes={"FifoQueue": "true"})[
            "QueueUrl"
        ]
        with count_requests(sqs) as requests:
            sqs.send_message(
                QueueUrl=url,
                MessageBody=job.to_json(),
                MessageGroupId=job.upload_id,  # one upload's messages stay in order
                MessageDeduplicationId=f"{job.upload_id}:demo",  # deterministic, never random
            )
            message = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]
        received = ProcessingJob.from_json(message["Body"])
    print(f"queue {names.processing}: {received.upload_id} with {len(received.objects)} object")
    print(f"SQS requests: {requests.total('sqs')}")
    return received


if __name__ == "__main__":
    main()
