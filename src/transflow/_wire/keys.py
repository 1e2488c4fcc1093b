"""Where things live in S3: the key layout of uploads, outputs and status records.

``uploads/{branch}/[users/{userId}/]{uploadId}/{filename}`` for inputs and
``outputs/{branch}/[users/{userId}/]{uploadId}/`` for outputs, with the upload's status record
at ``{output prefix}status.json``. The user id is always made one safe key segment here
(:func:`transflow._wire.safenames.safe_user_id`), so inputs and outputs of one user share a
folder name and no user id can add path segments. Pure: no AWS.
"""

from __future__ import annotations

from transflow._wire.model import ProcessingJob
from transflow._wire.safenames import safe_user_id

__all__ = [
    "STATUS_RECORD_NAME",
    "job_output_prefix",
    "output_prefix",
    "status_key",
    "upload_prefix",
]

STATUS_RECORD_NAME = "status.json"
"""The status record's file name under an upload's output prefix (reserved: a step cannot
write an output of that name)."""


def _user_part(user_id: str | None) -> str:
    return f"users/{safe_user_id(user_id)}/" if user_id else ""


def upload_prefix(branch: str, upload_id: str, user_id: str | None = None) -> str:
    """``uploads/{branch}/[users/{userId}/]{uploadId}/``: where an upload's files go.

    ``user_id`` is the id as the host knows it; its folder name is derived here."""
    return f"uploads/{branch}/{_user_part(user_id)}{upload_id}/"


def output_prefix(branch: str, upload_id: str, user_id: str | None = None) -> str:
    """``outputs/{branch}/[users/{userId}/]{uploadId}/``: where an upload's results go."""
    return f"outputs/{branch}/{_user_part(user_id)}{upload_id}/"


def job_output_prefix(job: ProcessingJob) -> str:
    """The output prefix of a job, by its branch, user and upload."""
    return output_prefix(job.branch, job.upload_id, job.user.user_id if job.user else None)


def status_key(branch: str, upload_id: str, user_id: str | None = None) -> str:
    """The key of an upload's status record, in the output bucket."""
    return output_prefix(branch, upload_id, user_id) + STATUS_RECORD_NAME
