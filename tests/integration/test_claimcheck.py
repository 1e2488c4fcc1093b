"""A job stored in S3 behind a claim check comes back equal, over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.vectors import load_vector
from transflow import ProcessingJob, S3ObjectRef
from transflow._aws.claimcheck import decode_job_message, load_claimed_job, store_claimed_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def test_a_large_job_travels_through_s3(s3: S3Client) -> None:
    s3.create_bucket(Bucket="uploads")
    base = ProcessingJob.from_dict(load_vector("job-seed.json"))
    objects = [
        S3ObjectRef("uploads", f"uploads/main/upload-abc/{i:05d}.wav") for i in range(10_000)
    ]
    job = ProcessingJob(
        upload_id=base.upload_id,
        template_id=base.template_id,
        objects=objects,
        branch=base.branch,
        user=base.user,
    )
    assert len(job.to_json().encode()) > 262_144
    claim = store_claimed_job(s3, job, bucket="uploads", key="transflow/claims/main/a.json")
    body = claim.to_json()
    assert len(body) < 200
    decoded = decode_job_message(body)
    assert decoded == claim
    assert load_claimed_job(s3, claim) == job
