"""Where things live in S3: the key layout of uploads, outputs and status records.

``uploads/{branch}/[users/{userId}/]{uploadId}/{filename}`` for inputs and
``outputs/{branch}/[users/{userId}/]{uploadId}/`` for outputs, with the upload's status record
at ``{output prefix}status.json``. The user id as the host knows it is always made one safe
key segment here (:func:`user_folder`, i.e. :func:`transflow._wire.safenames.safe_user_id`),
so inputs and outputs of one user share a folder name and no user id can add path segments.
A :class:`ProcessingJob` carries the folder name itself (the bridge derives it), which
:func:`job_key_problems` checks before any key is made from it. Pure: no AWS.
"""

from __future__ import annotations

import re

from transflow._wire.model import ProcessingJob
from transflow._wire.naming import branch_problem, is_canonical_branch
from transflow._wire.safenames import MAX_USER_ID_CHARS, safe_user_id

__all__ = [
    "DEFAULT_CLAIM_PREFIX",
    "STATUS_RECORD_NAME",
    "claim_key_problems",
    "folder_status_key",
    "is_user_folder",
    "job_key_problems",
    "job_object_problems",
    "job_output_prefix",
    "job_upload_prefix",
    "output_prefix",
    "status_key",
    "upload_prefix",
    "user_folder",
]

DEFAULT_CLAIM_PREFIX = "transflow/claims/"
"""Where the bridge stores claim checks by default (``{prefix}{branch}/{uploadId}/…``)."""

# What safe_user_id returns: kept as it was, or cleaned and ending in ~ and 12 hex digits.
_USER_FOLDER = re.compile(
    r"[A-Za-z0-9_@-][A-Za-z0-9._@-]*~[0-9a-f]{12}|[A-Za-z0-9_@-](?:[A-Za-z0-9._@-]*[A-Za-z0-9_@-])?"
)
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")

STATUS_RECORD_NAME = "status.json"
"""The status record's file name under an upload's output prefix (reserved: a step cannot
write an output of that name)."""


def user_folder(user_id: str) -> str:
    """The folder name (``users/{folder}/``) of a user id as the host knows it."""
    return safe_user_id(user_id)


def is_user_folder(name: str) -> bool:
    """Whether ``name`` is a folder name :func:`user_folder` can return: one key segment,
    never ``..``, ``/``, a control character or empty."""
    return (
        len(name) <= MAX_USER_ID_CHARS
        and ".." not in name
        and _USER_FOLDER.fullmatch(name) is not None
    )


def job_key_problems(job: ProcessingJob) -> list[str]:
    """Why keys made from ``job`` could leave ``outputs/{branch}/[users/{id}/]{uploadId}/``
    (empty when they cannot): a branch that is not canonical, an upload id that is not one
    key segment of the shape uploads use, a user id that is not a user folder name."""
    problems: list[str] = []
    branch = branch_problem(job.branch)
    if branch is not None:
        problems.append(f"branch: {branch}")
    if _UPLOAD_ID.fullmatch(job.upload_id) is None or ".." in job.upload_id:
        problems.append(
            f"uploadId: {job.upload_id[:80]!r} is not one key segment "
            "(1-128 letters, digits, '-', '_' or '.', not starting with '.', no '..')"
        )
    if job.user is not None and not is_user_folder(job.user.user_id):
        problems.append(
            f"user.userId: {job.user.user_id[:80]!r} is not a user folder name (the bridge "
            "writes safe_user_id of the uploader's id: letters, digits, '.', '_', '@', '-')"
        )
    return problems


def job_upload_prefix(job: ProcessingJob) -> str:
    """``uploads/{branch}/[users/{folder}/]{uploadId}/``: the one folder a job's inputs may
    be read from (the job carries the user's folder name, see :func:`job_key_problems`)."""
    user = f"users/{job.user.user_id}/" if job.user is not None else ""
    return f"uploads/{job.branch}/{user}{job.upload_id}/"


def _segments_problem(rest: str) -> str | None:
    # S3 keys are opaque, but a proxy or a copy tool may normalise paths: no segment that
    # could climb out of the folder, and no empty file name.
    parts = rest.split("/")
    if not rest or parts[-1] == "":
        return "names no file"
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' segment"
    if any(ord(c) < 0x20 or c == "\x7f" for c in rest):
        return "has a control character"
    return None


def job_object_problems(job: ProcessingJob, upload_buckets: frozenset[str]) -> list[str]:
    """Why the processor must not read the objects of ``job`` (empty when it may): each
    must be in one of ``upload_buckets`` and under the job's own upload folder
    (:func:`job_upload_prefix`), so a job of one user (or an anonymous one, or one of
    another branch) can never read another user's files or any output."""
    folder = job_upload_prefix(job)
    problems: list[str] = []
    for index, ref in enumerate(job.objects):
        where = f"objects[{index}]"
        if ref.bucket not in upload_buckets:
            problems.append(
                f"{where}.bucket: {ref.bucket[:80]!r} is not the upload bucket "
                f"({', '.join(sorted(upload_buckets))})"
            )
        if not ref.key.startswith(folder):
            problems.append(
                f"{where}.key: {ref.key[:120]!r} is not under the job's folder {folder!r}"
            )
            continue
        why = _segments_problem(ref.key[len(folder) :])
        if why is not None:
            problems.append(f"{where}.key: {ref.key[:120]!r} {why}")
    return problems


def claim_key_problems(
    key: str, claim_prefix: str, upload_id: str, branch: str | None
) -> list[str]:
    """Why a claim check at ``key`` cannot be the one the bridge wrote for upload
    ``upload_id`` (of ``branch``, when the message names it): the bridge writes
    ``{claim_prefix}{branch}/{uploadId}/{dedup id}.json``."""
    if not key.startswith(claim_prefix):
        return [f"claimCheck.key: {key[:120]!r} is not under the claim prefix {claim_prefix!r}"]
    parts = key[len(claim_prefix) :].split("/")
    expected = f"{claim_prefix}{branch or '{branch}'}/{upload_id}/{{name}}.json"
    if (
        len(parts) != 3
        or not is_canonical_branch(parts[0])
        or (branch is not None and parts[0] != branch)
        or parts[1] != upload_id
        or not parts[2].endswith(".json")
        or _segments_problem(parts[2]) is not None
    ):
        return [
            f"claimCheck.key: {key[:120]!r} is not the claim check of this message's upload "
            f"(expected {expected[:200]!r})"
        ]
    return []


def _user_part(user_id: str | None) -> str:
    return f"users/{safe_user_id(user_id)}/" if user_id else ""


def upload_prefix(branch: str, upload_id: str, user_id: str | None = None) -> str:
    """``uploads/{branch}/[users/{userId}/]{uploadId}/``: where an upload's files go.

    ``user_id`` is the id as the host knows it; its folder name is derived here."""
    return f"uploads/{branch}/{_user_part(user_id)}{upload_id}/"


def output_prefix(branch: str, upload_id: str, user_id: str | None = None) -> str:
    """``outputs/{branch}/[users/{userId}/]{uploadId}/``: where an upload's results go."""
    return f"outputs/{branch}/{_user_part(user_id)}{upload_id}/"


def _folder_output_prefix(branch: str, upload_id: str, folder: str | None) -> str:
    user = ""
    if folder is not None:
        user = f"users/{folder if is_user_folder(folder) else safe_user_id(folder)}/"
    return f"outputs/{branch}/{user}{upload_id}/"


def job_output_prefix(job: ProcessingJob) -> str:
    """The output prefix of a job, by its branch, user folder and upload.

    The job carries the user's folder name already (see :func:`job_key_problems`); a user
    id that is not one is made one, so no job can place keys outside its folder."""
    folder = job.user.user_id if job.user is not None else None
    return _folder_output_prefix(job.branch, job.upload_id, folder)


def folder_status_key(branch: str, upload_id: str, folder: str | None) -> str:
    """The status record's key for a user *folder name* as a job carries it (not cleaned a
    second time, which would name another folder), or for no user."""
    return _folder_output_prefix(branch, upload_id, folder) + STATUS_RECORD_NAME


def status_key(branch: str, upload_id: str, user_id: str | None = None) -> str:
    """The key of an upload's status record, in the output bucket."""
    return output_prefix(branch, upload_id, user_id) + STATUS_RECORD_NAME
