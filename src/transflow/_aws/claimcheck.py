"""Claim checks: a processing job too large for one SQS message travels through S3.

The bridge stores the job's JSON in S3 and sends a small message that refers to it; the
processor reads the message, fetches the job, and goes on as if it had arrived inline. The
message body of a claim check is ``{"uploadId": …, "claimCheck": {"bucket": …, "key": …}}``:
the upload id stays readable for logs and the dead-letter queue.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs

from transflow._wire.jsontext import JsonTextError, parse_json
from transflow._wire.model import ProcessingJob
from transflow.errors import JobFormatError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["ClaimCheck", "decode_job_message", "load_claimed_job", "store_claimed_job"]

CLAIM_CHECK_KEY = "claimCheck"


@attrs.frozen
class ClaimCheck:
    """A reference to a processing job stored in S3."""

    upload_id: str
    bucket: str
    key: str

    def to_json(self) -> str:
        """The message body that stands for the job."""
        return json.dumps(
            {"uploadId": self.upload_id, CLAIM_CHECK_KEY: {"bucket": self.bucket, "key": self.key}},
            separators=(",", ":"),
        )


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
        if (
            isinstance(ref, dict)
            and isinstance(ref.get("bucket"), str)
            and isinstance(ref.get("key"), str)
            and isinstance(upload_id, str)
        ):
            return ClaimCheck(upload_id, ref["bucket"], ref["key"])
        raise JobFormatError(
            "claim check",
            ['claimCheck: must be {"bucket": string, "key": string} beside a string uploadId'],
        )
    if data is None:
        return ProcessingJob.from_json(body)
    return ProcessingJob.from_dict(data)


def store_claimed_job(s3: S3Client, job: ProcessingJob, *, bucket: str, key: str) -> ClaimCheck:
    """Put the job's JSON at ``bucket``/``key`` and return the claim check to send."""
    s3.put_object(
        Bucket=bucket, Key=key, Body=job.to_json().encode("utf-8"), ContentType="application/json"
    )
    return ClaimCheck(job.upload_id, bucket, key)


def load_claimed_job(s3: S3Client, claim: ClaimCheck) -> ProcessingJob:
    """Fetch and parse the job a claim check refers to."""
    body = s3.get_object(Bucket=claim.bucket, Key=claim.key)["Body"].read()
    return ProcessingJob.from_json(body)
