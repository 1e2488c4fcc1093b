"""What the bridge asks S3, counted with botocore hooks: one HeadObject per upload while the
bridge stays warm, one listing per upload per invocation, none for a one-file upload; and
nothing the notification says is taken on trust."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.support.bridge import (
    BUCKET,
    bridge,
    fifo,
    jobs_on,
    lambda_event,
    notifying_bucket,
    post_files,
    receive_notifications,
)
from transflow import count_requests, create_upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def s3_record(key: str, *, etag: str = "0" * 32, size: int = 1) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "s3": {
            "bucket": {"name": BUCKET},
            "object": {"key": key, "size": size, "eTag": etag, "sequencer": "00AA"},
        },
    }


def test_ten_files_one_per_invocation_cost_one_head_and_a_listing_each(
    sqs: SQSClient, s3v4: S3Client
) -> None:
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    names = [f"take-{n}.wav" for n in range(10)]
    ticket = create_upload(s3v4, bucket=BUCKET, branch="main", template_id="t", files=names)
    the_bridge = bridge(sqs, s3v4, url)
    results = []
    with count_requests(s3v4) as counted:
        for file in ticket.files:  # S3 usually invokes once per object
            post_files([file], [file.name.encode()])
            (notification,) = receive_notifications(sqs, events_url, 1)
            results.append(the_bridge.handle(lambda_event([notification])))
    # The browser's ten POSTs go through the same client: leave them out.
    assert counted.count("HeadObject") == 1
    assert counted.count("ListObjectsV2") == 10
    assert [r.jobs_sent for r in results] == [0] * 9 + [1]
    assert [w.arrived for r in results for w in r.waiting] == list(range(1, 10))
    (job,) = jobs_on(sqs, url)
    etags = {
        o["Key"]: o["ETag"].strip('"')
        for o in s3v4.list_objects_v2(Bucket=BUCKET, Prefix=ticket.prefix)["Contents"]
    }
    assert {o.key: o.etag for o in job.objects} == etags


def test_a_one_file_upload_costs_one_head_and_no_listing(sqs: SQSClient, s3v4: S3Client) -> None:
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    ticket = create_upload(s3v4, bucket=BUCKET, branch="main", template_id="t", files=["a.wav"])
    post_files(ticket.files, [b"RIFF"])
    notifications = receive_notifications(sqs, events_url, 1)
    the_bridge = bridge(sqs, s3v4, url)
    with count_requests(s3v4) as counted:
        result = the_bridge.handle(lambda_event(notifications))
    assert counted.total("s3") == 1
    assert counted.count("HeadObject") == 1
    (job,) = jobs_on(sqs, url)
    head = s3v4.head_object(Bucket=BUCKET, Key=ticket.files[0].key)
    assert job.objects[0].etag == head["ETag"].strip('"')
    assert result.sent[0].upload_id == ticket.upload_id


def test_a_forged_notification_in_a_known_upload_grants_nothing(
    sqs: SQSClient, s3v4: S3Client
) -> None:
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    ticket = create_upload(
        s3v4, bucket=BUCKET, branch="main", template_id="t", files=["a.wav", "b.wav"]
    )
    the_bridge = bridge(sqs, s3v4, url)
    post_files(ticket.files[:1], [b"first"])
    first = the_bridge.handle(lambda_event(receive_notifications(sqs, events_url, 1)))
    assert len(first.waiting) == 1  # the upload's metadata is known from here on
    forged = {
        "Records": [
            # b.wav was never uploaded; a size and an ETag that S3 never reported.
            s3_record(ticket.prefix + "b.wav", etag="f" * 32, size=10**12),
            s3_record(ticket.prefix + "c.wav"),
        ]
    }
    with count_requests(s3v4) as counted:
        result = the_bridge.handle(forged)
    assert counted.count("HeadObject") == 0  # the metadata came from the first file
    assert result.sent == ()
    assert result.waiting == ()
    assert sorted(str(f.key) for f in result.failed) == [
        ticket.prefix + "b.wav",
        ticket.prefix + "c.wav",
    ]
    assert all("gone" in f.reason and not f.retryable for f in result.failed)
    assert jobs_on(sqs, url) == []
    # The real second file, with a forged size in its notification: the job names what
    # S3 holds.
    post_files(ticket.files[1:], [b"second"])
    (notification,) = receive_notifications(sqs, events_url, 1)
    body = json.loads(notification["Body"])
    body["Records"][0]["s3"]["object"].update(size=10**12, eTag="f" * 32)
    notification["Body"] = json.dumps(body)
    done = the_bridge.handle(lambda_event([notification]))
    assert done.failed == ()
    (job,) = jobs_on(sqs, url)
    assert "f" * 32 not in {o.etag for o in job.objects}
    assert sorted(o.key for o in job.objects) == sorted(f.key for f in ticket.files)


def test_a_cold_bridge_still_heads_every_record_of_an_invocation(
    sqs: SQSClient, s3v4: S3Client
) -> None:
    """Metadata known from an earlier invocation saves the HeadObject; within one
    invocation every record of an upload the bridge has not seen is headed, so a record
    whose own metadata is broken still fails alone."""
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    ticket = create_upload(
        s3v4, bucket=BUCKET, branch="main", template_id="t", files=["a.wav", "b.wav"]
    )
    post_files(ticket.files, [b"a", b"b"])
    notifications = receive_notifications(sqs, events_url, 2)
    with count_requests(s3v4) as counted:
        result = bridge(sqs, s3v4, url).handle(lambda_event(notifications))
    assert counted.count("HeadObject") == 2
    assert counted.count("ListObjectsV2") == 1
    assert result.jobs_sent == 1


def test_an_upload_id_reused_after_its_job_is_read_afresh(sqs: SQSClient, s3v4: S3Client) -> None:
    """A host may pass its own upload id: once an upload's job is emitted the bridge
    forgets its metadata, so a later upload with the same id is headed again."""
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    the_bridge = bridge(sqs, s3v4, url)
    first = create_upload(
        s3v4, bucket=BUCKET, branch="main", template_id="t1", files=["a.wav"], upload_id="same"
    )
    post_files(first.files, [b"a"])
    the_bridge.handle(lambda_event(receive_notifications(sqs, events_url, 1)))
    (job,) = jobs_on(sqs, url)
    assert job.template_id == "t1"
    again = create_upload(
        s3v4,
        bucket=BUCKET,
        branch="main",
        template_id="t2",
        files=["b.wav", "c.wav"],
        upload_id="same",
    )
    post_files(again.files[:1], [b"b"])
    with count_requests(s3v4) as counted:
        result = the_bridge.handle(lambda_event(receive_notifications(sqs, events_url, 1)))
    assert counted.count("HeadObject") == 1
    # a.wav of the first upload is still in the folder: b.wav makes two of two.
    (job,) = jobs_on(sqs, url)
    assert job.template_id == "t2"
    assert result.failed == ()
