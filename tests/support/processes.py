"""Worker processes in tests: wait for a job's completed status record, then stop the
process the way a service manager does (SIGTERM) and hand back what it wrote on stderr."""

from __future__ import annotations

import signal
import subprocess
from typing import TYPE_CHECKING

from tests.support.streaming import wait_until
from transflow.processing.storage import read_status_record

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def job_completed(s3: S3Client, bucket: str, key: str) -> bool:
    """Whether the status record at ``key`` says the job completed."""
    record = read_status_record(s3, bucket, key)
    return record is not None and record.completed


def stop_when_completed(
    process: subprocess.Popen[str], s3: S3Client, bucket: str, key: str, *, what: str
) -> str:
    """Wait (60 s at most) until the job's record says completed, or the process ended on
    its own; then SIGTERM it and return its stderr. A process still running after a failure
    is killed."""
    try:
        wait_until(
            lambda: process.poll() is not None or job_completed(s3, bucket, key),
            timeout=60,
            what=what,
        )
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return err
