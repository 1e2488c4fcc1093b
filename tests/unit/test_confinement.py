"""Issue 13: every key a job or a presigned POST can make stays inside its folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.uploads import policy_of
from transflow import (
    JobFormatError,
    ProcessingJob,
    S3ObjectRef,
    UploadError,
    UploadFile,
    UserContext,
)
from transflow._wire.keys import (
    is_user_folder,
    job_key_problems,
    job_output_prefix,
    upload_prefix,
    user_folder,
)
from transflow._wire.safenames import safe_filename
from transflow.ingest.grouping import key_branch_problem
from transflow.ingest.metadata import read_upload_metadata
from transflow.ingest.uploads import create_upload, pinned_key_problem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def conditions_of(fields: dict[str, str]) -> list[object]:
    conditions: list[object] = policy_of(fields)["conditions"]
    return conditions


# -- presigned POST policies pin the exact key ------------------------------------------------


@pytest.mark.parametrize(
    "name", ["${filename}", "a${filename}", "$${filename}", "x.wav${filename}", "{}$.wav"]
)
def test_a_policy_variable_in_a_file_name_never_unpins_the_key(signer: S3Client, name: str) -> None:
    ticket = create_upload(
        signer, bucket="uploads", branch="main", template_id="t", files=[name, name]
    )
    for file in ticket.files:
        assert "$" not in file.key
        conditions = conditions_of(dict(file.fields))
        assert {"key": file.key} in conditions
        assert not [c for c in conditions if isinstance(c, list) and "$key" in c]


def test_botocore_unpins_a_key_ending_in_the_variable(signer: S3Client) -> None:
    # Why the name is cleaned: what botocore signs for such a key, and that it is caught.
    post = signer.generate_presigned_post(Bucket="uploads", Key="uploads/main/u/${filename}")
    conditions = conditions_of(post["fields"])
    assert ["starts-with", "$key", "uploads/main/u/"] in conditions
    problem = pinned_key_problem(post["fields"], "uploads/main/u/${filename}")
    assert problem is not None
    assert "vary" in problem
    assert pinned_key_problem({}, "k") == "the presigned POST carries no policy"
    assert pinned_key_problem({"policy": "!!"}, "k") is not None


@given(st.text(max_size=120))
def test_no_file_name_keeps_a_policy_variable(name: str) -> None:
    assert "$" not in safe_filename(name)


# -- one user folder everywhere ----------------------------------------------------------------


@given(st.text(max_size=120))
def test_the_bridge_puts_the_upload_folder_in_the_job(user_id: str) -> None:
    meta = read_upload_metadata("k", {"templateid": "t", "userid": user_id})
    if meta.user is None:
        return
    folder = meta.user.user_id
    assert is_user_folder(folder)
    # Outputs go under the very folder the inputs were uploaded to.
    uploaded = upload_prefix("main", "up", meta.user_id)
    job = ProcessingJob("up", "t", [S3ObjectRef("b", uploaded + "a.wav")], "main", user=meta.user)
    assert job_output_prefix(job) == "outputs/main/" + uploaded.split("/", 2)[2]
    assert job_key_problems(job) == []


def test_a_hostile_user_id_lands_in_its_own_folder() -> None:
    for hostile in ("victim/x", "..", "../victim", "a\nb", "victim/../../x"):
        folder = read_upload_metadata("k", {"templateid": "t", "userid": hostile}).user
        assert folder is not None
        assert folder.user_id == user_folder(hostile)
        assert "/" not in folder.user_id
        assert ".." not in folder.user_id
        assert not folder.user_id.startswith("victim/")


def test_user_ids_with_edge_spaces_are_refused_at_upload(signer: S3Client) -> None:
    # S3 trims metadata values: the bridge would read another id than the folder's.
    with pytest.raises(UploadError, match="leading or trailing spaces"):
        create_upload(
            signer,
            bucket="uploads",
            branch="main",
            template_id="t",
            files=[UploadFile("a.wav")],
            user=UserContext(" bob"),
        )


# -- the processor's confinement check --------------------------------------------------------


def job(
    upload_id: str = "up-1", branch: str = "main", user_id: str | None = "user123"
) -> ProcessingJob:
    return ProcessingJob.from_dict(
        {
            "uploadId": upload_id,
            "templateId": "t",
            "branch": branch,
            "objects": [{"bucket": "b", "key": "uploads/main/up-1/a.wav"}],
            **({"user": {"userId": user_id}} if user_id is not None else {}),
        }
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"upload_id": ".."}, "uploadId"),
        ({"upload_id": "a/../../b"}, "uploadId"),
        ({"upload_id": "a/b"}, "uploadId"),
        ({"upload_id": ".hidden"}, "uploadId"),
        ({"branch": ".."}, "branch"),
        ({"branch": "Main"}, "branch"),
        ({"branch": "main:evil"}, "branch"),
        ({"branch": "main/x"}, "branch"),
        ({"branch": "功能"}, "branch"),
        ({"user_id": "victim/x"}, "user.userId"),
        ({"user_id": ".."}, "user.userId"),
        ({"user_id": "a\x00b"}, "user.userId"),
    ],
)
def test_jobs_whose_keys_would_leave_their_folder_are_named(
    kwargs: dict[str, str], field: str
) -> None:
    problems = job_key_problems(job(**kwargs))
    assert len(problems) == 1
    assert problems[0].startswith(field + ":")


@pytest.mark.parametrize("kwargs", [{"upload_id": "a\r\nb"}, {"branch": ""}, {"user_id": ""}])
def test_the_wire_format_refuses_the_rest_before(kwargs: dict[str, str]) -> None:
    with pytest.raises(JobFormatError):
        job(**kwargs)


def test_ordinary_jobs_pass() -> None:
    assert job_key_problems(job()) == []
    assert job_key_problems(job(user_id=None, branch="feature-login-2")) == []
    assert job_key_problems(job(user_id=user_folder("auth0|abc"))) == []


# -- the bridge reads the key's branch strictly ------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "uploads/main:evil/up/a.wav",
        "uploads/../up/a.wav",
        "uploads/Main/up/a.wav",
        "uploads//up/a.wav",
        "uploads/feature_x/up/a.wav",
        "uploads/-main/up/a.wav",
    ],
)
def test_non_canonical_key_branches_are_refused(key: str) -> None:
    problem = key_branch_problem(key)
    assert problem is not None
    assert "canonical" in problem


@pytest.mark.parametrize(
    "key", ["uploads/main/up/a.wav", "uploads/feature-x-2/users/u/up/a.wav", "other/a.wav"]
)
def test_canonical_key_branches_pass(key: str) -> None:
    assert key_branch_problem(key) is None


# -- the objects a job may read and the claim checks it may follow (issue 21) ------------------


def test_objects_must_be_in_the_jobs_own_upload_folder_of_the_upload_bucket() -> None:
    from transflow._wire.keys import job_object_problems

    mine = job(upload_id="up-1", user_id="mallory")
    ok = S3ObjectRef("b", "uploads/main/users/mallory/up-1/a.wav")
    assert job_object_problems(attrs.evolve(mine, objects=(ok,)), frozenset({"b"})) == []
    for bucket, key in [
        ("b", "uploads/main/users/alice/up-1/a.wav"),
        ("b", "uploads/main/up-1/a.wav"),
        ("b", "uploads/dev/users/mallory/up-1/a.wav"),
        ("b", "uploads/main/users/mallory/up-1x/a.wav"),
        ("b", "uploads/main/users/mallory/up-1/"),
        ("b", "uploads/main/users/mallory/up-1/../../alice/up-1/a.wav"),
        ("b", "uploads/main/users/mallory/up-1//a.wav"),
        ("b", "uploads/main/users/mallory/up-1/a\nb.wav"),
        ("b", "outputs/main/users/mallory/up-1/a.wav"),
        ("other", "uploads/main/users/mallory/up-1/a.wav"),
    ]:
        forged = attrs.evolve(mine, objects=(ok, S3ObjectRef(bucket, key)))
        problems = job_object_problems(forged, frozenset({"b"}))
        assert len(problems) == 1, (key, problems)
        assert problems[0].startswith("objects[1].")


@given(st.text(max_size=60), st.sampled_from(["mallory", None]))
def test_no_key_outside_the_folder_passes(rest: str, user: str | None) -> None:
    from transflow._wire.keys import job_object_problems, job_upload_prefix

    mine = job(upload_id="up-1", user_id=user)
    key = "uploads/main/users/alice/up-1/" + rest
    forged = attrs.evolve(mine, objects=(S3ObjectRef("b", key),))
    assert job_object_problems(forged, frozenset({"b"})) != []
    inside = job_upload_prefix(mine) + rest
    clean = attrs.evolve(mine, objects=(S3ObjectRef("b", inside),))
    if not job_object_problems(clean, frozenset({"b"})):
        assert ".." not in inside.split("/")
        assert inside.startswith(job_upload_prefix(mine))


@pytest.mark.parametrize(
    ("key", "branch", "ok"),
    [
        ("transflow/claims/main/up-1/d.json", "main", True),
        ("transflow/claims/main/up-1/d.json", None, True),
        ("transflow/claims/dev/up-1/d.json", "main", False),
        ("transflow/claims/main/up-2/d.json", "main", False),
        ("transflow/claims/main/up-1/x/d.json", "main", False),
        ("transflow/claims/Main/up-1/d.json", None, False),
        ("transflow/claims/main/up-1/d.txt", "main", False),
        ("uploads/main/up-1/d.json", "main", False),
        ("transflow/claims/main/up-1/../d.json", "main", False),
    ],
)
def test_claim_checks_must_be_the_bridges_for_the_upload(
    key: str, branch: str | None, ok: bool
) -> None:
    from transflow._wire.keys import claim_key_problems

    assert (claim_key_problems(key, "transflow/claims/", "up-1", branch) == []) is ok
