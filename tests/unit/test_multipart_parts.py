"""Multipart arithmetic and the checks that need no S3: part sizes within S3's limits,
create_upload's new arguments, and MultipartEndpoint's answers to hostile bodies (typed
4xx replies, never an exception)."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.strategies import json_values
from transflow import (
    MultipartEndpoint,
    MultipartStats,
    UploadError,
    UploadFile,
    create_upload,
    issue_stream_token,
)
from transflow.errors import MultipartError
from transflow.ingest.parts import (
    MAX_MULTIPART_OBJECT_BYTES,
    MAX_PART_BYTES,
    MAX_PARTS,
    MIN_PART_BYTES,
    max_part_count,
    part_count,
    part_size_for,
)
from transflow.ingest.uploads import MAX_POST_OBJECT_BYTES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
SECRET = secrets.token_urlsafe(32)


@given(
    size=st.integers(0, MAX_MULTIPART_OBJECT_BYTES),
    preferred=st.integers(MIN_PART_BYTES, 64 * MIB),
)
def test_every_file_fits_s3s_part_limits(size: int, preferred: int) -> None:
    part = part_size_for(size, preferred)
    count = part_count(size, part)
    assert MIN_PART_BYTES <= part <= MAX_PART_BYTES
    assert 1 <= count <= MAX_PARTS
    assert (count - 1) * part < max(size, 1) <= count * part or size == 0
    assert count <= max_part_count(MAX_MULTIPART_OBJECT_BYTES, preferred)


def test_the_largest_object_needs_parts_over_the_preferred_size() -> None:
    assert part_size_for(MAX_MULTIPART_OBJECT_BYTES, 8 * MIB) == 525 * MIB
    assert part_count(MAX_MULTIPART_OBJECT_BYTES, 525 * MIB) == 9987
    assert part_size_for(1024**3) == 8 * MIB


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"multipart_threshold": -1}, "multipart_threshold"),
        ({"multipart_threshold": 6 * 1024**3}, "multipart_threshold"),
        ({"part_size": MIB}, "part_size"),
        ({"part_size": True}, "part_size"),
        ({"max_file_size": MAX_MULTIPART_OBJECT_BYTES + 1}, "max_file_size"),
    ],
)
def test_create_upload_refuses_multipart_arguments_s3_would(
    signer: S3Client, kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(UploadError, match=expected):
        create_upload(signer, bucket="b", branch="main", template_id="t", files=["a"], **kwargs)


def test_small_or_undeclared_files_still_go_by_post_with_the_post_limit(signer: S3Client) -> None:
    # No S3 call here: a file at the threshold, or of no declared size, is never multipart.
    ticket = create_upload(
        signer,
        bucket="b",
        branch="main",
        template_id="t",
        files=[UploadFile("a", None, 5), UploadFile("b")],
        max_file_size=MAX_MULTIPART_OBJECT_BYTES,
        multipart_threshold=5,
    )
    assert [f.method for f in ticket.files] == ["post", "post"]
    assert {f.max_size for f in ticket.files} == {MAX_POST_OBJECT_BYTES}
    wire = ticket.to_dict()["files"][0]
    assert wire["method"] == "post"
    assert not {"multipartUploadId", "partSize", "partCount", "size"} & wire.keys()


def _endpoint(signer: S3Client) -> MultipartEndpoint:
    return MultipartEndpoint(signer, "uploads", secret=SECRET, part_size=5 * MIB)


def test_sign_parts_signs_locally_and_caps_the_urls(signer: S3Client) -> None:
    token = issue_stream_token(SECRET, "upload:main:up1")
    body = {"uploadId": "up1", "key": "uploads/main/up1/a.mp4", "multipartUploadId": "m"}
    reply = _endpoint(signer).handle(
        "sign-parts", {**body, "partNumbers": [1, 2, 2]}, authorization=f"Bearer {token}"
    )
    assert reply.status == 200
    assert [p["partNumber"] for p in reply.body["parts"]] == [1, 2]
    assert "partNumber=1&" in reply.body["parts"][0]["url"]
    assert "X-Amz-Expires=900" in reply.body["parts"][0]["url"]
    many = _endpoint(signer).handle(
        "sign-parts",
        {**body, "partNumbers": list(range(1, 12))},
        authorization=f"Bearer {token}",
    )
    assert many.status == 400
    assert "at most 10" in many.body["message"]
    anonymous = _endpoint(signer)
    assert anonymous.handle("abort", body).status == 401
    assert anonymous.handle("nothing", body).status == 404
    assert anonymous.stats() == MultipartStats(refused=0, aborted=0, denied=1, bad_requests=1)


def test_a_users_token_cannot_reach_another_users_folder(signer: S3Client) -> None:
    token = issue_stream_token(SECRET, "upload:main:up1", user_id="alice")
    mine = "uploads/main/users/alice/up1/a.mp4"
    theirs = "uploads/main/users/bob/up1/a.mp4"
    for key, status in ((mine, 200), (theirs, 403), ("uploads/main/up1/a.mp4", 403)):
        reply = _endpoint(signer).handle(
            "sign-parts",
            {"uploadId": "up1", "key": key, "multipartUploadId": "m", "partNumbers": [1]},
            authorization=f"Bearer {token}",
        )
        assert reply.status == status, (key, reply.body)


def test_the_authorize_hook_decides_without_a_token(signer: S3Client) -> None:
    seen: list[str] = []

    def authorize(request: object, channel: str) -> bool:
        seen.append(channel)
        return request == "ok"

    endpoint = MultipartEndpoint(signer, "uploads", authorize=authorize)
    body = {
        "uploadId": "up1",
        "key": "uploads/main/up1/a.mp4",
        "multipartUploadId": "m",
        "partNumbers": [1],
    }
    assert endpoint.handle("sign-parts", body, request="ok").status == 200
    assert endpoint.handle("sign-parts", body, request="no").status == 403
    assert seen == ["upload:main:up1", "upload:main:up1"]


def test_an_endpoint_that_would_serve_anyone_is_refused(signer: S3Client) -> None:
    with pytest.raises(MultipartError, match=r"secret= .* or authorize="):
        MultipartEndpoint(signer, "uploads")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    action=st.sampled_from(["sign-parts", "list-parts", "complete", "abort", "x"]),
    body=json_values | st.binary(max_size=64),
)
def test_hostile_bodies_get_a_typed_4xx_reply(signer: S3Client, action: str, body: Any) -> None:
    token = issue_stream_token(SECRET, "upload:main:up1")
    payload = body if isinstance(body, (bytes, dict)) else json.dumps(body)
    reply = _endpoint(signer).handle(action, payload, authorization=f"Bearer {token}")
    assert 400 <= reply.status < 500
    assert set(reply.body) == {"error", "message"}
    assert reply.body["error"].endswith("Error")
