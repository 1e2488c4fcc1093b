"""Multipart uploads against the moto server: create_upload begins them, MultipartEndpoint
signs, lists, completes and aborts them, with real 5 MiB parts PUT over HTTP."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest
from bench.chaos import CallFaults

from tests.support.bridge import (
    bridge,
    fifo,
    jobs_on,
    lambda_event,
    notifying_bucket,
    post_files,
    receive_notifications,
)
from tests.support.multipart import MIB, bearer, body, part_bytes, put_parts, upload_all
from transflow import MultipartEndpoint, UploadError, UploadFile, UserContext, create_upload
from transflow.ingest.metadata import read_upload_metadata

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

BUCKET = "uploads"
SECRET = secrets.token_urlsafe(32)


def _ticket(s3: S3Client, size: int = 11 * MIB, **kwargs: object):  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=BUCKET)
    return create_upload(
        s3,
        bucket=BUCKET,
        branch="main",
        template_id="video",
        files=[UploadFile("big.mp4", "video/mp4", size), UploadFile("small.txt", "text/plain", 5)],
        stream_secret=SECRET,
        multipart_threshold=6 * MIB,
        part_size=5 * MIB,
        **kwargs,  # type: ignore[arg-type]
    )


def _endpoint(s3: S3Client, **kwargs: object) -> MultipartEndpoint:
    return MultipartEndpoint(s3, BUCKET, secret=SECRET, part_size=5 * MIB, **kwargs)  # type: ignore[arg-type]


def test_a_big_file_goes_in_parts_and_completes_with_the_pinned_metadata(s3v4: S3Client) -> None:
    ticket = _ticket(s3v4, user=UserContext("alice"))
    big, small = ticket.files
    assert (big.method, small.method) == ("multipart", "post")
    assert (big.part_size, big.part_count, big.size) == (5 * MIB, 3, 11 * MIB)
    wire = ticket.to_dict()["files"]
    assert wire[0]["multipartUploadId"] == big.multipart_upload_id
    assert {"method", "key", "partSize", "partCount", "size"} <= wire[0].keys()
    assert wire[1]["method"] == "post"
    assert "multipartUploadId" not in wire[1]

    done = upload_all(_endpoint(s3v4), big, ticket.upload_id, ticket.stream_token)

    head = s3v4.head_object(Bucket=BUCKET, Key=big.key)
    assert done["size"] == head["ContentLength"] == 11 * MIB
    assert done["key"] == big.key
    assert head["ContentType"] == "video/mp4"
    meta = read_upload_metadata(big.key, head["Metadata"])
    assert (meta.upload_id, meta.file_count) == (ticket.upload_id, 2)
    assert meta.user_id == "alice"


def test_list_parts_shows_what_s3_holds_so_a_refreshed_page_resumes(s3v4: S3Client) -> None:
    ticket = _ticket(s3v4)
    big = ticket.files[0]
    endpoint = _endpoint(s3v4)
    first = put_parts(endpoint, big, ticket.upload_id, ticket.stream_token, [1])
    listed = endpoint.handle(
        "list-parts", body(big, ticket.upload_id), authorization=bearer(ticket.stream_token)
    )
    assert listed.status == 200
    assert listed.body["parts"] == [{"partNumber": 1, "size": 5 * MIB, "etag": first[0]["etag"]}]
    rest = put_parts(endpoint, big, ticket.upload_id, ticket.stream_token, [2, 3])
    reply = endpoint.handle(
        "complete",
        body(big, ticket.upload_id, parts=first + rest),
        authorization=bearer(ticket.stream_token),
    )
    assert reply.status == 200, reply.body


def test_complete_after_abort_is_a_conflict_and_unknown_uploads_are_404(s3v4: S3Client) -> None:
    ticket = _ticket(s3v4)
    big = ticket.files[0]
    endpoint = _endpoint(s3v4)
    auth = bearer(ticket.stream_token)
    parts = put_parts(endpoint, big, ticket.upload_id, ticket.stream_token, [1, 2, 3])
    aborted = endpoint.handle("abort", body(big, ticket.upload_id), authorization=auth)
    assert aborted.status == 200
    assert aborted.body == {"aborted": True}
    again = endpoint.handle(
        "complete", body(big, ticket.upload_id, parts=parts), authorization=auth
    )
    assert again.status == 409
    assert again.body["error"] == "MultipartUploadGoneError"
    listed = endpoint.handle("list-parts", body(big, ticket.upload_id), authorization=auth)
    assert listed.status == 404
    assert listed.body["error"] == "MultipartUploadNotFoundError"


def test_tokens_and_keys_of_other_uploads_are_refused(s3v4: S3Client) -> None:
    ticket = _ticket(s3v4)
    big = ticket.files[0]
    endpoint = _endpoint(s3v4)
    one = {"partNumbers": [1]}
    assert endpoint.handle("sign-parts", body(big, ticket.upload_id, **one)).status == 401
    forged = endpoint.handle(
        "sign-parts", body(big, ticket.upload_id, **one), authorization="Bearer tf1.x.y"
    )
    assert forged.status == 401
    other = create_upload(
        s3v4, bucket=BUCKET, branch="main", template_id="t", files=["a"], stream_secret=SECRET
    )
    stolen = endpoint.handle(
        "sign-parts", body(big, ticket.upload_id, **one), authorization=bearer(other.stream_token)
    )
    assert stolen.status == 403
    outside = endpoint.handle(
        "sign-parts",
        {**body(big, ticket.upload_id, **one), "key": big.key.replace("big.mp4", "../x")},
        authorization=bearer(ticket.stream_token),
    )
    assert outside.status == 403


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"partNumbers": []}, 400),
        ({"partNumbers": [0]}, 400),
        ({"partNumbers": list(range(1, 12))}, 400),
        ({"partNumbers": ["1"]}, 400),
    ],
)
def test_bad_part_numbers_are_400(s3v4: S3Client, extra: dict[str, object], status: int) -> None:
    ticket = _ticket(s3v4)
    reply = _endpoint(s3v4, max_file_size=60 * MIB).handle(
        "sign-parts",
        body(ticket.files[0], ticket.upload_id, **extra),
        authorization=bearer(ticket.stream_token),
    )
    assert reply.status == status
    assert reply.body["error"] == "MultipartError"


def test_complete_refuses_and_aborts_parts_over_the_limit(s3v4: S3Client) -> None:
    ticket = _ticket(s3v4)
    big = ticket.files[0]
    endpoint = _endpoint(s3v4, max_file_size=12 * MIB)
    parts = put_parts(
        endpoint,
        big,
        ticket.upload_id,
        ticket.stream_token,
        [1, 2, 3],
        data=lambda _n: b"y" * (5 * MIB),
    )
    reply = endpoint.handle(
        "complete",
        body(big, ticket.upload_id, parts=parts),
        authorization=bearer(ticket.stream_token),
    )
    assert reply.status == 400
    assert reply.body["error"] == "MultipartRefusedError"
    assert endpoint.refused == 1
    assert endpoint.stats().refused == 1
    assert s3v4.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3v4.list_objects_v2(Bucket=BUCKET)


def test_small_parts_before_the_last_are_refused_before_s3_sees_them(s3v4: S3Client) -> None:
    ticket = _ticket(s3v4)
    big = ticket.files[0]
    endpoint = _endpoint(s3v4)
    parts = put_parts(
        endpoint,
        big,
        ticket.upload_id,
        ticket.stream_token,
        [1, 2],
        data=lambda n: b"z" * (MIB if n == 1 else 5 * MIB),
    )
    reply = endpoint.handle(
        "complete",
        body(big, ticket.upload_id, parts=parts),
        authorization=bearer(ticket.stream_token),
    )
    assert reply.status == 400
    assert "at least" in reply.body["message"]


def test_part_bytes_helper_sizes(s3v4: S3Client) -> None:
    big = _ticket(s3v4).files[0]
    assert [len(part_bytes(big, n)) for n in (1, 2, 3)] == [5 * MIB, 5 * MIB, MIB]


def test_one_multipart_file_and_one_post_file_make_exactly_one_job(
    sqs: SQSClient, s3v4: S3Client
) -> None:
    events_url = notifying_bucket(sqs, s3v4, BUCKET)
    url = fifo(sqs)
    ticket = create_upload(
        s3v4,
        bucket=BUCKET,
        branch="main",
        template_id="video",
        files=[UploadFile("big.mp4", "video/mp4", 11 * MIB), UploadFile("notes.txt", None, 5)],
        stream_secret=SECRET,
        multipart_threshold=6 * MIB,
        part_size=5 * MIB,
    )
    big, small = ticket.files
    the_bridge = bridge(sqs, s3v4, url, upload_bucket=BUCKET)

    upload_all(_endpoint(s3v4), big, ticket.upload_id, ticket.stream_token)
    # moto also sends an ObjectCreated:Put for the completed object (S3 does not): the
    # bridge gets only the event S3 sends.
    got = receive_notifications(sqs, events_url, 1)
    while not any("CompleteMultipartUpload" in m["Body"] for m in got):
        got += receive_notifications(sqs, events_url, 1)
    (completed,) = [m for m in got if "ObjectCreated:CompleteMultipartUpload" in m["Body"]]
    # The barrier: one of two files is there, so no job yet.
    assert the_bridge.lambda_handler(lambda_event([completed]), None) == {"batchItemFailures": []}
    assert jobs_on(sqs, url) == []

    post_files([small], [b"notes"])
    (posted,) = receive_notifications(sqs, events_url, 1)
    assert the_bridge.lambda_handler(lambda_event([posted]), None) == {"batchItemFailures": []}
    (job,) = jobs_on(sqs, url)
    assert job.upload_id == ticket.upload_id
    assert sorted(o.key for o in job.objects) == sorted([big.key, small.key])


def test_a_failed_begin_aborts_the_multipart_uploads_already_begun(s3v4: S3Client) -> None:
    s3v4.create_bucket(Bucket=BUCKET)
    begun = []

    def decide(operation: str, _index: int) -> str | None:
        if operation != "CreateMultipartUpload":
            return None
        begun.append(operation)
        return "drop" if len(begun) > 1 else None

    faults = CallFaults(s3v4, decide)
    with pytest.raises(UploadError, match="would not begin the multipart upload"):
        create_upload(
            s3v4,
            bucket=BUCKET,
            branch="main",
            template_id="video",
            files=[UploadFile("a.mp4", None, 7 * MIB), UploadFile("b.mp4", None, 7 * MIB)],
            multipart_threshold=6 * MIB,
        )
    assert faults.injected >= 1
    assert s3v4.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
