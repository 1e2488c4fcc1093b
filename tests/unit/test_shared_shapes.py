"""Key layout, received messages, claim-check bodies and module boundaries."""

from __future__ import annotations

import pytest

from tests.support.vectors import load_vector
from transflow import JobFormatError, ProcessingJob, ReceivedMessage
from transflow._aws.claimcheck import ClaimCheck, decode_job_message
from transflow._wire.keys import job_output_prefix, output_prefix, status_key, upload_prefix


def test_key_layout() -> None:
    assert upload_prefix("main", "u1") == "uploads/main/u1/"
    assert upload_prefix("main", "u1", "user123") == "uploads/main/users/user123/u1/"
    assert output_prefix("feature-x", "u1", "user-456") == "outputs/feature-x/users/user-456/u1/"
    assert status_key("main", "u1") == "outputs/main/u1/status.json"
    job = ProcessingJob.from_dict(load_vector("job-full.json"))
    assert job_output_prefix(job) == "outputs/feature-x/users/user-456/upload-def/"


def test_received_message_from_a_lambda_record() -> None:
    record = load_vector("sqs-event-fifo-processing.json")["Records"][2]
    message = ReceivedMessage.from_lambda_record(record)
    assert message.message_id == "m-3"
    assert message.group_id == "upload-ghi"
    assert message.receive_count == 2
    assert message.dedup_id == "dedup-m-3"
    assert message.body == "{not json"
    assert message.event_source_arn is not None


def test_received_message_from_receive_message() -> None:
    message = ReceivedMessage.from_sqs_message(
        {"MessageId": "x", "ReceiptHandle": "r", "Body": "b", "Attributes": {}}
    )
    assert message.group_id is None
    assert message.receive_count == 1


def test_decode_job_message_reads_jobs_and_claim_checks() -> None:
    job = ProcessingJob.from_dict(load_vector("job-seed.json"))
    assert decode_job_message(job.to_json()) == job
    claim = ClaimCheck("upload-abc", "uploads", "transflow/claims/main/upload-abc/x.json")
    assert decode_job_message(claim.to_json()) == claim
    with pytest.raises(JobFormatError, match="claimCheck"):
        decode_job_message('{"uploadId": "u", "claimCheck": {"bucket": 1}}')
    with pytest.raises(JobFormatError, match="not valid JSON"):
        decode_job_message("{not json")


def test_every_public_name_is_exported_from_the_package() -> None:
    import transflow

    for name in transflow.__all__:
        assert hasattr(transflow, name), name
