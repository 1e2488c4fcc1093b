"""A processing job round-trips through a real FIFO queue on the moto server, over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.endpoint import on_other_endpoint
from tests.support.vectors import load_vector
from transflow import ProcessingJob, count_requests, load_config, queue_names

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def test_job_round_trips_through_a_fifo_queue(sqs: SQSClient) -> None:
    names = queue_names("myapp", "feature/Login-Page")
    url = sqs.create_queue(QueueName=names.processing, Attributes={"FifoQueue": "true"})["QueueUrl"]
    job = ProcessingJob.from_dict(load_vector("job-full.json"))

    with count_requests(sqs) as counter:
        sqs.send_message(
            QueueUrl=url,
            MessageBody=job.to_json(),
            MessageGroupId=job.upload_id,
            MessageDeduplicationId="upload-def:1",
        )
        # The same deduplication id inside the 5-minute window is dropped by the queue.
        sqs.send_message(
            QueueUrl=url,
            MessageBody=job.to_json(),
            MessageGroupId=job.upload_id,
            MessageDeduplicationId="upload-def:1",
        )
        received = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )["Messages"]

    assert len(received) == 1
    message = received[0]
    assert ProcessingJob.from_json(message["Body"]) == job
    assert message["Attributes"]["MessageGroupId"] == "upload-def"
    assert message["Attributes"]["MessageDeduplicationId"] == "upload-def:1"
    assert counter.count("SendMessage", "sqs") == 2
    assert counter.count("ReceiveMessage") == 1
    assert counter.total("sqs") == 3
    assert counter.total("s3") == 0


def test_each_test_starts_from_an_empty_endpoint(sqs: SQSClient) -> None:
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_empty_receives_are_counted_apart(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="counted")["QueueUrl"]
    with count_requests(sqs) as counter:
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
        sqs.send_message(QueueUrl=url, MessageBody="x")
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert counter.count("ReceiveMessage") == 2
    assert counter.empty_receives == 1
    assert counter.busy_total("sqs") == 2
    sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)  # detached: not counted
    assert counter.empty_receives == 1


def test_the_endpoints_own_queue_urls_are_accepted_by_the_config(sqs: SQSClient) -> None:
    # moto's http://host:port/{account}/{name}; under `make fidelity`, LocalStack's path-style
    # http://host:port/queue/{region}/{account}/{name}, which the config used to refuse.
    url = sqs.create_queue(QueueName="shop-main-processing.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    if on_other_endpoint():
        assert "/queue/us-east-1/" in url
    config = load_config(env={"SQS_QUEUE_URL": url, "TRANSFLOW_PROJECT": "shop"})
    assert config.sqs.queue_url == url
