"""Claim checks: a processing job too large for one SQS message travels through S3.

The bridge stores the job's JSON in S3 and sends a small message that refers to it; the
processor reads the message, fetches the job, and goes on as if it had arrived inline. The
message body of a claim check is ``{"uploadId": …, "branch": …, "userId": …, "claimCheck":
{"bucket": …, "key": …}}`` (``userId``, the user's folder name, only for a user's upload):
the identity stays readable for logs and the dead-letter queue, and the processor refuses a
stored job whose identity is not the message's. A claim check is read with a byte cap
(:data:`MAX_CLAIM_CHECK_BYTES`): a larger object is refused without being read in full.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.jsontext import JsonTextError, parse_json
from transflow._wire.model import ProcessingJob
from transflow.errors import JobConfinementError, JobFormatError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "MAX_CLAIM_CHECK_BYTES",
    "ClaimCheck",
    "decode_job_message",
    "load_claimed_job",
    "store_claimed_job",
]

CLAIM_CHECK_KEY = "claimCheck"
MAX_CLAIM_CHECK_BYTES = 8 * 1024 * 1024
"""The largest claim check the processor reads. A job of 10,000 files is about 2 MB of
JSON; anything much larger was not written by the bridge."""


@attrs.frozen
class ClaimCheck:
    """A reference to a processing job stored in S3."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    upload_id: str
    bucket: str
    key: str
    branch: str | None = None
    """The job's branch (None in a message written before claim checks named it)."""
    user_id: str | None = None
    """The job's user folder name; None for an anonymous upload."""

    def to_json(self) -> str:
        """The message body that stands for the job."""
        identity = {"uploadId": self.upload_id}
        if self.branch is not None:
            identity["branch"] = self.branch
        if self.user_id is not None:
            identity["userId"] = self.user_id
        return json.dumps(
            {**identity, CLAIM_CHECK_KEY: {"bucket": self.bucket, "key": self.key}},
            separators=(",", ":"),
        )

    def identity_problems(self, job: ProcessingJob) -> list[str]:
        """Why ``job`` (read from this claim check) is not the job this message stands for:
        another upload id, branch or user than the message names."""
        problems: list[str] = []
        if job.upload_id != self.upload_id:
            problems.append(
                f"uploadId: the claimed job is upload {job.upload_id[:80]!r}, the message "
                f"{self.upload_id[:80]!r}"
            )
        if self.branch is not None and job.branch != self.branch:
            problems.append(
                f"branch: the claimed job is of branch {job.branch[:80]!r}, the message of "
                f"{self.branch[:80]!r}"
            )
        stored_user = job.user.user_id if job.user is not None else None
        if stored_user != self.user_id:
            problems.append(
                f"userId: the claimed job is of user {stored_user!r:.80}, the message of "
                f"{self.user_id!r:.80}"
            )
        return problems


def decode_job_message(body: str | bytes) -> ProcessingJob | ClaimCheck:
    """A processing-queue message body: the job itself or a claim check for it.

    Raises :class:`JobFormatError` for anything else."""
    try:
        data = parse_json(body)
    except JsonTextError:
        data = None  # ProcessingJob.from_json below reports it properly
    if isinstance(data, dict) and CLAIM_CHECK_KEY in data:
        ref = data[CLAIM_CHECK_KEY]
        upload_id = data.get("uploadId")
        branch, user_id = data.get("branch"), data.get("userId")
        if (
            isinstance(ref, dict)
            and isinstance(ref.get("bucket"), str)
            and isinstance(ref.get("key"), str)
            and isinstance(upload_id, str)
            and isinstance(branch, (str, type(None)))
            and isinstance(user_id, (str, type(None)))
        ):
            return ClaimCheck(upload_id, ref["bucket"], ref["key"], branch, user_id)
        raise JobFormatError(
            "claim check",
            [
                'claimCheck: must be {"bucket": string, "key": string} beside a string '
                "uploadId (and optional string branch and userId)"
            ],
        )
    if data is None:
        return ProcessingJob.from_json(body)
    return ProcessingJob.from_dict(data)


def store_claimed_job(s3: S3Client, job: ProcessingJob, *, bucket: str, key: str) -> ClaimCheck:
    """Put the job's JSON at ``bucket``/``key`` and return the claim check to send."""
    s3.put_object(
        Bucket=bucket, Key=key, Body=job.to_json().encode("utf-8"), ContentType="application/json"
    )
    user = job.user.user_id if job.user is not None else None
    return ClaimCheck(job.upload_id, bucket, key, job.branch, user)


def load_claimed_job(
    s3: S3Client, claim: ClaimCheck, *, max_bytes: int = MAX_CLAIM_CHECK_BYTES
) -> ProcessingJob:
    """Fetch and parse the job a claim check refers to. At most ``max_bytes`` + 1 bytes
    are asked for (a ranged GET): a larger object raises :class:`JobConfinementError`
    without being read in full."""
    response = s3.get_object(Bucket=claim.bucket, Key=claim.key, Range=f"bytes=0-{max_bytes}")
    with response["Body"] as stream:
        body = stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        total = str(response.get("ContentRange", "")).rpartition("/")[2] or "more"
        raise JobConfinementError(
            [
                f"claimCheck: s3://{claim.bucket}/{claim.key[:120]} holds {total} bytes, "
                f"more than the {max_bytes} a claim check may have; the bridge never writes "
                "one that large"
            ]
        )
    return ProcessingJob.from_json(body)
