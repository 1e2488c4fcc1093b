"""On the moto server: one hostile record in a batch of real notifications fails alone."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.support.bridge import (
    bridge,
    fifo,
    jobs_on,
    lambda_event,
    notifying_bucket,
    put_upload_object,
    receive_notifications,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def test_a_hostile_message_fails_alone_and_the_others_are_queued(
    sqs: SQSClient, s3: S3Client
) -> None:
    events_url = notifying_bucket(sqs, s3)
    url = fifo(sqs)
    for n in range(3):
        put_upload_object(s3, f"uploads/main/up-{n}/a.wav", f"up-{n}")
    notifications = receive_notifications(sqs, events_url, 3)
    real = json.loads(notifications[0]["Body"])["Records"][0]
    huge_size = json.dumps({"Records": [real]}).replace(
        '"size": ', '"size": ' + "9" * 5000 + ', "was": ', 1
    )
    listed_sequencer = {
        "Records": [
            {
                **real,
                "s3": {
                    **real["s3"],
                    "object": {**real["s3"]["object"], "sequencer": ["0055", "0056"]},
                },
            }
        ]
    }
    kinesis = {"Records": [{"eventSource": "aws:kinesis", "eventName": "aws:kinesis:record"}]}
    hostile = [
        {"MessageId": "huge", "ReceiptHandle": "r1", "Body": huge_size},
        {"MessageId": "kinesis", "ReceiptHandle": "r2", "Body": json.dumps(kinesis)},
        {"MessageId": "listed", "ReceiptHandle": "r3", "Body": json.dumps(listed_sequencer)},
    ]
    event = lambda_event(
        [notifications[0], hostile[0], notifications[1], hostile[1], hostile[2], notifications[2]]
    )

    response = bridge(sqs, s3, url).lambda_handler(event, None)

    assert response == {
        "batchItemFailures": [{"itemIdentifier": "huge"}, {"itemIdentifier": "kinesis"}]
    }
    # The list-valued sequencer is ignored (the ETag tells versions apart): its record is
    # a job like the others, and the queue keeps one message per upload.
    assert sorted(job.upload_id for job in jobs_on(sqs, url)) == ["up-0", "up-1", "up-2"]
