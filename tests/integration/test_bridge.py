"""The grouping bridge against the moto server over HTTP: presigned POSTs, S3 notifications
to a standard queue, jobs on a FIFO queue, faults injected with botocore hooks."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bridge import (
    BUCKET,
    bridge,
    drain,
    fifo,
    jobs_on,
    lambda_event,
    notifying_bucket,
    post_files,
    put_upload_object,
    receive_notifications,
)
from tests.support.faults import EntryFaults
from tests.support.vectors import load_vector
from transflow import (
    BridgeError,
    UploadFile,
    UserContext,
    count_requests,
    create_upload,
)
from transflow._aws.claimcheck import ClaimCheck, decode_job_message, load_claimed_job
from transflow.cli.local import LocalAws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# -- the real path --------------------------------------------------------------------------


def test_presigned_posts_become_one_job_on_the_fifo_queue(sqs: SQSClient, s3v4: S3Client) -> None:
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    ticket = create_upload(
        s3v4,
        bucket=BUCKET,
        branch="Feature/Login-Page",
        template_id="audio-processing",
        files=[
            UploadFile("my song.mp3", "audio/mpeg"),
            UploadFile("cover+art.png", "image/png"),
            UploadFile("notes.txt", "text/plain"),
        ],
        user=UserContext("user123", permissions=["upload"]),
        fields={"slug": "intro"},
        max_file_size=1024,
        allowed_content_types=["audio/*", "image/*", "text/plain"],
    )
    post_files(ticket.files, [b"ID3 song", b"\x89PNG cover", b"notes"])
    notifications = receive_notifications(sqs, events_url, 3)

    the_bridge = bridge(sqs, s3v4, url)
    with count_requests(sqs, s3v4) as counter:
        response = the_bridge.lambda_handler(lambda_event(notifications), None)

    assert response == {"batchItemFailures": []}
    assert counter.count("HeadObject") == 3
    assert counter.count("ListObjectsV2") == 1
    assert counter.count("SendMessageBatch") == 1
    (job,) = jobs_on(sqs, url)
    assert job.upload_id == ticket.upload_id
    assert job.template_id == "audio-processing"
    assert job.branch == "feature-login-page--01ab65eb"
    assert job.fields == {"slug": "intro"}
    assert job.user == UserContext("user123", permissions=["upload"])
    assert sorted(o.key for o in job.objects) == sorted(f.key for f in ticket.files)
    # The keys the job names are the objects S3 holds.
    bodies = {
        o.key: s3v4.get_object(Bucket=o.bucket, Key=o.key)["Body"].read() for o in job.objects
    }
    assert bodies[ticket.prefix + "cover+art.png"] == b"\x89PNG cover"


def test_three_files_one_per_invocation_give_one_job(sqs: SQSClient, s3v4: S3Client) -> None:
    events_url = notifying_bucket(sqs, s3v4)
    url = fifo(sqs)
    ticket = create_upload(
        s3v4, bucket=BUCKET, branch="main", template_id="t", files=["a.wav", "b.wav", "c.wav"]
    )
    the_bridge = bridge(sqs, s3v4, url)
    results = []
    for file in ticket.files:  # S3 usually invokes once per object
        post_files([file], [b"x"])
        (notification,) = receive_notifications(sqs, events_url, 1)
        results.append(the_bridge.handle(lambda_event([notification])))
        if file is ticket.files[0]:
            repeat = lambda_event([notification])
    assert [r.jobs_sent for r in results] == [0, 0, 1]
    assert [(w.arrived, w.expected) for r in results[:2] for w in r.waiting] == [(1, 3), (2, 3)]
    # A late duplicate of the first notification re-emits the same job, which the queue drops.
    again = the_bridge.handle(repeat)
    assert again.sent[0].dedup_id == results[2].sent[0].dedup_id
    (job,) = jobs_on(sqs, url)
    assert len(job.objects) == 3


def test_the_same_notification_twice_gives_one_job(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    for key, meta in load_vector("s3-event-metadata.json").items():
        if key != "_comment":
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", Metadata=meta)
    event = load_vector("s3-event-direct.json")
    the_bridge = bridge(sqs, s3, url)
    first = the_bridge.handle(event)
    second = the_bridge.handle(event)
    assert first.jobs_sent == second.jobs_sent == 2
    assert [j.dedup_id for j in first.sent] == [j.dedup_id for j in second.sent]
    jobs = {j.upload_id: j for j in jobs_on(sqs, url)}
    assert sorted(jobs) == ["upload-abc", "upload-xyz"]
    assert sorted(o.key for o in jobs["upload-abc"].objects) == [
        "uploads/main/users/user123/upload-abc/cover+art.png",
        "uploads/main/users/user123/upload-abc/my song.mp3",
    ]
    assert jobs["upload-abc"].fields == {"slug": "intro", "previewStartTime": "12"}
    assert jobs["upload-abc"].user == UserContext("user123", permissions=["upload"])
    assert jobs["upload-xyz"].user == UserContext("user999")


def test_sqs_vector_skips_the_test_event_and_sends_the_record(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    metadata = load_vector("s3-event-metadata.json")
    key = "uploads/main/users/user123/upload-abc/my song.mp3"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", Metadata=metadata[key])
    event = load_vector("sqs-event-wrapping-s3.json")
    result = bridge(sqs, s3, url).handle(event)
    assert result.jobs_sent == 1
    assert [s.message_id for s in result.skipped] == ["2e1424d4-f796-459a-8184-9c92662be6da"]
    assert result.batch_response() == {"batchItemFailures": []}
    (job,) = jobs_on(sqs, url)
    assert [o.key for o in job.objects] == [key]


def test_eventbridge_event(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    put_upload_object(s3, "uploads/dev/u9/a b.png", "u9")
    event = {
        "version": "0",
        "id": "e1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {
            "bucket": {"name": BUCKET},
            "object": {"key": "uploads/dev/u9/a+b.png", "etag": "x", "sequencer": "01"},
        },
    }
    assert bridge(sqs, s3, url).lambda_handler(event, None) == {"batchItemFailures": []}
    (job,) = jobs_on(sqs, url)
    assert (job.upload_id, job.branch) == ("u9", "dev")


# -- scale and cost --------------------------------------------------------------------------


def test_records_of_many_uploads_are_grouped_and_sent_ten_jobs_per_call(
    sqs: SQSClient, s3: S3Client
) -> None:
    # 30 uploads of 4 files, delivered in one batch without file counts: 30 jobs in 3 calls.
    # (The 10,000-file upload is bench/big_upload.py's, in `make bench`.)
    uploads, files = 30, 4
    records = uploads * files
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    keys = [f"uploads/main/u{i // files}/f{i % files}.bin" for i in range(records)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: put_upload_object(s3, keys[i], f"u{i // files}"), range(records)))
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "sequencer": f"{i:08X}"}},
            }
            for i, key in enumerate(keys)
        ]
    }
    with count_requests(sqs, s3) as counter:
        result = bridge(sqs, s3, url).handle(event)
    assert result.ok
    assert result.jobs_sent == uploads
    assert sum(len(job.records) for job in result.sent) == records
    assert counter.count("SendMessageBatch") == 3  # 10 entries per call, no more calls
    assert counter.count("HeadObject") == records
    assert counter.total("sqs") == counter.count("SendMessageBatch")
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == str(uploads)


def test_a_job_too_large_for_a_message_travels_as_a_claim_check(
    sqs: SQSClient, s3: S3Client
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    files = 1001  # more than one ListObjectsV2 page
    prefix = "uploads/main/big/"
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: put_upload_object(s3, f"{prefix}{i:05d}.jpg", "big", count=files),
                range(files),
            )
        )
    last = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Post",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": f"{prefix}01000.jpg"}},
            }
        ]
    }
    the_bridge = bridge(sqs, s3, url, max_message_bytes=16_384)
    with count_requests(sqs, s3) as counter:
        result = the_bridge.handle(last)
    assert counter.count("ListObjectsV2") == 2
    (sent,) = result.sent
    assert sent.object_count == files
    assert sent.claim_check is not None
    (message,) = drain(sqs, url)
    assert len(message["Body"].encode()) < 1024
    claim = decode_job_message(message["Body"])
    assert isinstance(claim, ClaimCheck)
    assert claim.key.startswith("transflow/claims/main/big/")
    job = load_claimed_job(s3, claim)
    assert len(job.objects) == files
    assert message["Attributes"]["MessageGroupId"] == "big"
    # S3 notifies the bridge of its own claim object too; it is skipped, not failed.
    echo = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": claim.key}},
            }
        ]
    }
    skipped = the_bridge.handle(echo)
    assert skipped.ok
    assert len(skipped.skipped) == 1


# -- failures --------------------------------------------------------------------------------


def sqs_record(message_id: str, key: str) -> dict[str, Any]:
    body = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": key.replace(" ", "+")}},
            }
        ]
    }
    return {
        "messageId": message_id,
        "receiptHandle": "rh",
        "body": json.dumps(body),
        "eventSource": "aws:sqs",
    }


def test_each_bad_record_fails_alone_with_a_reason(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    put_upload_object(s3, "uploads/main/ok/a.png", "ok")
    s3.put_object(
        Bucket=BUCKET,
        Key="uploads/main/b64/a.png",
        Body=b"x",
        Metadata={"templateid": "t", "uploadid": "b64", "fields": "***"},
    )
    s3.put_object(
        Bucket=BUCKET, Key="uploads/main/nt/a.png", Body=b"x", Metadata={"uploadid": "nt"}
    )
    event = {
        "Records": [
            sqs_record("good", "uploads/main/ok/a.png"),
            sqs_record("gone", "uploads/main/gone/a.png"),
            sqs_record("base64", "uploads/main/b64/a.png"),
            sqs_record("notemplate", "uploads/main/nt/a.png"),
            {"messageId": "garbage", "receiptHandle": "rh", "body": "{", "eventSource": "aws:sqs"},
        ]
    }
    the_bridge = bridge(sqs, s3, url)
    result = the_bridge.handle(event)
    reasons = {f.message_id: f.reason for f in result.failed}
    assert set(reasons) == {"gone", "base64", "notemplate", "garbage"}
    assert "gone (404)" in reasons["gone"]
    assert "base64" in reasons["base64"]
    assert "templateid" in reasons["notemplate"]
    assert "not JSON" in reasons["garbage"]
    response = the_bridge.lambda_handler(event, None)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        "gone",
        "base64",
        "notemplate",
        "garbage",
    ]
    (job,) = jobs_on(sqs, url)  # sent twice, kept once
    assert job.upload_id == "ok"


def test_a_batch_where_everything_failed_raises(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    the_bridge = bridge(sqs, s3, url)
    with pytest.raises(BridgeError, match="not enqueued") as caught:
        the_bridge.lambda_handler({"Records": [sqs_record("m1", "uploads/main/x/gone.png")]}, None)
    assert caught.value.result is not None
    direct = load_vector("s3-event-direct.json")  # none of its objects exist here
    with pytest.raises(BridgeError):
        the_bridge.lambda_handler(direct, None)


def test_send_failures_are_retried_or_reported(sqs: SQSClient, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    url = fifo(sqs)
    for name in ("retry", "refuse", "fine"):
        put_upload_object(s3, f"uploads/main/{name}/a.png", name)
    event = {
        "Records": [sqs_record(n, f"uploads/main/{n}/a.png") for n in ("retry", "refuse", "fine")]
    }

    def decide(call: int, entry: dict[str, Any]) -> tuple[str, bool] | None:
        if entry["MessageGroupId"] == "retry" and call == 0:
            return ("ServiceUnavailable", False)  # transient: retried
        if entry["MessageGroupId"] == "refuse":
            return ("InvalidParameterValue", True)  # the sender's fault: reported
        return None

    faults = EntryFaults(sqs, "SendMessageBatch", decide)
    response = bridge(sqs, s3, url).lambda_handler(event, None)
    assert faults.injected >= 2
    assert response == {"batchItemFailures": [{"itemIdentifier": "refuse"}]}
    assert sorted(j.upload_id for j in jobs_on(sqs, url)) == ["fine", "retry"]


# -- every record lands in exactly one place ----------------------------------------------------

record_kinds = st.sampled_from(["good", "gone", "bad-metadata", "not-created"])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(record_kinds, st.sampled_from(["u1", "u2", None]), st.sampled_from(["a", "b"])),
        min_size=1,
        max_size=8,
    ),
    st.booleans(),
)
def test_every_created_record_is_in_one_job_or_one_failure(
    aws: LocalAws, items: list[tuple[str, str | None, str]], whole_uploads: bool
) -> None:
    sqs, s3 = aws.sqs(), aws.s3()
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    url = fifo(sqs, f"q-{uuid.uuid4().hex[:12]}.fifo")
    records = []
    for index, (kind, upload_id, name) in enumerate(items):
        # "good" and "not-created" records may share a key (a duplicate notification);
        # missing and broken objects have keys of their own.
        prefix = "" if kind in ("good", "not-created") else f"{kind}-"
        key = f"uploads/main/{upload_id or 'loose'}/{prefix}{name}.png"
        if kind in ("good", "bad-metadata", "not-created"):
            meta = {"templateid": "t", "filecount": "2"}
            if upload_id:
                meta["uploadid"] = upload_id
            if kind == "bad-metadata":
                meta["permissions"] = "not json"
            s3.put_object(Bucket=bucket, Key=key, Body=b"x", Metadata=meta)
        records.append(
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectRemoved:Delete"
                if kind == "not-created"
                else "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": key, "sequencer": f"{index:04X}"},
                },
            }
        )
    result = bridge(sqs, s3, url, whole_uploads=whole_uploads, upload_bucket=bucket).handle(
        {"Records": records}
    )
    places: dict[str, list[str]] = {}
    for job in result.sent:
        for ref in job.records:
            places.setdefault(ref, []).append("job")
    for failure in result.failed:
        places.setdefault(failure.ref, []).append("failed")
    for waiting in result.waiting:
        places.setdefault(waiting.ref, []).append("waiting")
    for skipped in result.skipped:
        places.setdefault(skipped.ref, []).append("skipped")
    assert sorted(places) == sorted(f"Records[{i}]" for i in range(len(items)))
    for index, (kind, _upload, _name) in enumerate(items):
        (place,) = places[f"Records[{index}]"]  # exactly one place, never none
        expected = {
            "good": {"job", "waiting"} if whole_uploads else {"job"},
            "gone": {"failed"},
            "bad-metadata": {"failed"},
            "not-created": {"skipped"},
        }[kind]
        assert place in expected, (kind, place)
    sent_ids = {ref for job in result.sent for ref in job.records}
    assert len(drain(sqs, url)) == len({j.dedup_id for j in result.sent})
    assert not sent_ids & {f.ref for f in result.failed}
