"""create_upload's checks and the POST policy it signs: decoded and checked condition by
condition (signing is local; no endpoint is involved)."""

from __future__ import annotations

import base64
import json
import string
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.uploads import policy_of
from transflow import (
    ProcessingJob,
    S3ObjectRef,
    TransflowError,
    UploadError,
    UploadFile,
    UploadMetadataError,
    UploadRefusedError,
    UserContext,
    create_upload,
    read_upload_metadata,
)
from transflow._wire.keys import job_output_prefix
from transflow._wire.safenames import MAX_FILENAME_BYTES, safe_filename, safe_user_id
from transflow.ingest.metadata import encode_fields
from transflow.ingest.uploads import MAX_POST_OBJECT_BYTES, content_type_allowed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def exact_conditions(policy: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            out.update(condition)
        elif condition[0] == "eq":
            out[condition[1].lstrip("$")] = condition[2]
    return out


def test_policy_pins_key_metadata_content_type_and_size(signer: S3Client) -> None:
    ticket = create_upload(
        signer,
        bucket="uploads",
        branch="Feature/Login-Page",
        template_id="audio-processing",
        files=[UploadFile("my song.mp3", "audio/mpeg", 1234), UploadFile("cover.png", "image/png")],
        user=UserContext("user123", permissions=["upload"]),
        fields={"slug": "intro", "previewStartTime": "12"},
        upload_id="upload-abc",
        max_file_size=50_000_000,
        allowed_content_types=["audio/*", "image/png"],
    )
    assert ticket.upload_id == "upload-abc"
    assert ticket.branch == "feature-login-page--01ab65eb"
    assert ticket.prefix == "uploads/feature-login-page--01ab65eb/users/user123/upload-abc/"
    assert [f.key for f in ticket.files] == [
        "uploads/feature-login-page--01ab65eb/users/user123/upload-abc/my song.mp3",
        "uploads/feature-login-page--01ab65eb/users/user123/upload-abc/cover.png",
    ]
    for file, content_type in zip(ticket.files, ["audio/mpeg", "image/png"], strict=True):
        policy = policy_of(dict(file.fields))
        pinned = exact_conditions(policy)
        assert pinned["key"] == file.key
        assert pinned["bucket"] == "uploads"
        assert pinned["Content-Type"] == content_type
        assert pinned["x-amz-meta-uploadid"] == "upload-abc"
        assert pinned["x-amz-meta-templateid"] == "audio-processing"
        assert pinned["x-amz-meta-userid"] == "user123"
        assert json.loads(pinned["x-amz-meta-permissions"]) == ["upload"]
        assert pinned["x-amz-meta-filecount"] == "2"
        fields = json.loads(base64.b64decode(pinned["x-amz-meta-fields"]))
        assert fields == {"slug": "intro", "previewStartTime": "12"}
        ranges = [c for c in policy["conditions"] if isinstance(c, list)]
        assert ["content-length-range", 0, 50_000_000] in ranges
        # Every form field the browser sends is pinned (S3 refuses unlisted fields), and
        # the form carries the same values the policy pins.
        for name, value in file.fields.items():
            if name in ("policy", "x-amz-signature"):
                continue
            assert pinned.get(name) == value, name
        assert "x-amz-credential" in file.fields  # SigV4, as the client asked


def test_random_upload_ids_are_url_safe_and_long(signer: S3Client) -> None:
    ids = {
        create_upload(signer, bucket="b", branch="main", template_id="t", files=["a.txt"]).upload_id
        for _ in range(50)
    }
    assert len(ids) == 50
    for upload_id in ids:
        assert len(upload_id) >= 22  # 128 bits in base64url
        assert set(upload_id) <= set(string.ascii_letters + string.digits + "-_")


def test_without_limits_the_policy_still_bounds_the_size(signer: S3Client) -> None:
    ticket = create_upload(signer, bucket="b", branch="main", template_id="t", files=["a.bin"])
    policy = policy_of(dict(ticket.files[0].fields))
    assert ["content-length-range", 0, MAX_POST_OBJECT_BYTES] in policy["conditions"]
    assert "x-amz-meta-userid" not in exact_conditions(policy)
    assert ticket.prefix == f"uploads/main/{ticket.upload_id}/"


def test_every_refused_file_is_named_with_its_reason(signer: S3Client) -> None:
    with pytest.raises(UploadRefusedError) as caught:
        create_upload(
            signer,
            bucket="b",
            branch="main",
            template_id="t",
            files=[
                UploadFile("ok.png", "image/png", 10),
                UploadFile("huge.png", "image/png", 10_000),
                UploadFile("evil.png", "evil/image/png"),
                UploadFile("script.js", "text/javascript"),
                UploadFile("untyped.png"),
            ],
            max_file_size=1000,
            allowed_content_types=["image/*"],
        )
    problems = dict(caught.value.problems)
    assert set(problems) == {"huge.png", "evil.png", "script.js", "untyped.png"}
    assert "over the 1000-byte limit" in problems["huge.png"]
    assert "not a media type" in problems["evil.png"]
    assert "not one of image/*" in problems["script.js"]
    assert "no content type" in problems["untyped.png"]
    assert isinstance(caught.value, TransflowError)
    assert "huge.png" in str(caught.value)


@pytest.mark.parametrize(
    ("content_type", "patterns", "allowed"),
    [
        ("image/png", ["image/*"], True),
        ("IMAGE/PNG", ["image/*"], True),
        ("image/png; charset=x", ["image/png"], True),
        ("evil/image/png", ["image/*"], False),
        ("image/png/evil", ["image/*"], False),
        ("imagex/png", ["image/*"], False),
        ("image/pngx", ["image/png"], False),
        ("video/mp4", ["*/*"], True),
        ("video/mp4", ["audio/*", "image/*"], False),
        ("", ["*/*"], False),
    ],
)
def test_content_type_patterns_are_anchored(
    content_type: str, patterns: list[str], allowed: bool
) -> None:
    assert content_type_allowed(content_type, patterns) is allowed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"files": []}, "at least one file"),
        ({"files": "a.png"}, "list of file names"),
        ({"upload_id": "../x"}, "upload id"),
        ({"upload_id": "has space"}, "upload id"),
        ({"template_id": ""}, "template id"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 8 * 24 * 3600}, "expires_in"),
        ({"max_file_size": -1}, "max_file_size"),
        ({"allowed_content_types": ["images"]}, "media type patterns"),
        ({"allowed_content_types": "image/*"}, "list of media types"),
        ({"user": UserContext("jos\u00e9")}, "printable ASCII"),
        ({"fields": {"blob": "x" * 3000}}, "2048-byte limit"),
        ({"fields": {"bad": float("nan")}}, "cannot be written as JSON"),
        ({"branch": "功能"}, "has no letters a-z or digits"),
        ({"branch": "!!!"}, "has no letters a-z or digits"),
    ],
)
def test_unusable_arguments_raise_upload_error(
    signer: S3Client, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {
        "bucket": "b",
        "branch": "main",
        "template_id": "t",
        "files": ["a.png"],
        **kwargs,
    }
    with pytest.raises(UploadError, match=message):
        create_upload(signer, **arguments)


def test_repeated_names_get_distinct_keys(signer: S3Client) -> None:
    ticket = create_upload(
        signer,
        bucket="b",
        branch="main",
        template_id="t",
        files=["a.png", "a.png", "A.png", "dir/a.png", "noext", "noext"],
    )
    keys = [f.key.rsplit("/", 1)[1] for f in ticket.files]
    assert len({k.lower() for k in keys}) == len(keys)
    assert keys[:3] == ["a.png", "a-2.png", "A-3.png"]
    assert keys[5] == "noext-2"
    assert [f.name for f in ticket.files][3] == "dir/a.png"  # the browser's name is kept


# -- safe names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["my song.mp3", "cover+art.png", "résumé.pdf", "a~b.png", "x", ".htaccess"]
)
def test_safe_names_are_kept(name: str) -> None:
    assert safe_filename(name) == name


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..", ".", "a/b.png", "a\\b.png", "a\x00b.png", "evil\u202egnp.exe", ""],
)
def test_unsafe_names_are_cleaned(name: str) -> None:
    safe = safe_filename(name)
    assert safe
    assert ".." not in safe
    assert "/" not in safe
    assert "\\" not in safe
    assert safe not in (".", "..")
    assert all(ch.isprintable() for ch in safe)


def test_long_names_keep_their_extension() -> None:
    safe = safe_filename("x" * 500 + ".flac")
    assert safe.endswith(".flac")
    assert len(safe.encode()) <= MAX_FILENAME_BYTES


def test_user_ids_never_share_a_folder() -> None:
    ids = ["a/b", "a_b", "a b", "a\\b", "../a", "a", "A", "a.b", "a..b", "x" * 100, "x" * 101]
    folders = [safe_user_id(i) for i in ids]
    assert len(set(folders)) == len(ids)
    assert safe_user_id("user123") == "user123"
    assert safe_user_id("auth0|abc") != safe_user_id("auth0_abc")


@given(st.text(max_size=300))
def test_any_file_name_becomes_one_safe_key_segment(name: str) -> None:
    safe = safe_filename(name)
    assert safe
    assert "/" not in safe
    assert ".." not in safe
    assert len(safe.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in safe)
    assert safe_filename(safe) == safe  # idempotent: a safe name is kept as it is


@given(st.text(max_size=200), st.text(max_size=200))
def test_distinct_user_ids_get_distinct_folders(first: str, second: str) -> None:
    for user_id in (first, second):
        folder = safe_user_id(user_id)
        assert folder
        assert "/" not in folder
        assert ".." not in folder
        assert folder not in (".", "..")
    if first != second:
        assert safe_user_id(first) != safe_user_id(second)


# -- reading the metadata back ---------------------------------------------------------------


def test_metadata_round_trips() -> None:
    meta = read_upload_metadata(
        "k",
        {
            "uploadid": "u1",
            "templateid": "t",
            "fields": encode_fields({"slug": "é", "n": 1}),
            "userid": "user1",
            "permissions": '["a","b"]',
            "filecount": "3",
        },
    )
    assert meta.upload_id == "u1"
    assert meta.fields == {"slug": "é", "n": 1}
    assert meta.user == UserContext("user1", permissions=["a", "b"])
    assert meta.file_count == 3


def test_dashed_spellings_are_accepted() -> None:
    meta = read_upload_metadata("k", {"Upload-Id": "u1", "template-id": "t"})
    assert (meta.upload_id, meta.template_id, meta.file_count) == ("u1", "t", None)


def test_bad_metadata_lists_every_problem() -> None:
    with pytest.raises(UploadMetadataError) as caught:
        read_upload_metadata(
            "uploads/main/x/a.png",
            {"fields": "%%%not-base64", "permissions": "upload", "filecount": "-1"},
        )
    text = "; ".join(caught.value.problems)
    for word in ("templateid", "fields", "permissions", "filecount"):
        assert word in text
    assert "uploads/main/x/a.png" in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1,2]").decode(),
        "@@@@",
        base64.b64encode(b'{"n": ' + b"9" * 5_000 + b"}").decode(),
        base64.b64encode(b"[" * 100_000).decode(),
        '{"n": NaN}',
    ],
)
def test_fields_that_are_not_a_json_object_are_refused(fields: str) -> None:
    with pytest.raises(UploadMetadataError, match="fields"):
        read_upload_metadata("k", {"templateid": "t", "fields": fields})


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8))
def test_any_metadata_parses_or_raises_a_typed_error(metadata: dict[str, str]) -> None:
    try:
        meta = read_upload_metadata("k", metadata)
    except UploadMetadataError as exc:
        problems = exc.problems
        assert problems, "an error must say what was wrong"
    else:
        assert meta.template_id  # only metadata naming a template parses


def test_inputs_and_outputs_of_one_user_share_one_safe_folder(signer: S3Client) -> None:
    user = UserContext("auth0|abc/../x")
    ticket = create_upload(
        signer, bucket="b", branch="main", template_id="t", files=["a.wav"], user=user
    )
    folder = safe_user_id(user.user_id)
    assert ticket.prefix == f"uploads/main/users/{folder}/{ticket.upload_id}/"
    job = ProcessingJob(
        upload_id=ticket.upload_id,
        template_id="t",
        objects=[S3ObjectRef("b", ticket.files[0].key)],
        branch="main",
        user=user,
    )
    assert job_output_prefix(job) == f"outputs/main/users/{folder}/{ticket.upload_id}/"
    assert "/../" not in job_output_prefix(job)
