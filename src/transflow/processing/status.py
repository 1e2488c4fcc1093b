"""The status record of an upload: a Transloadit-like assembly, JSON in S3.

It lives at ``{output prefix}status.json`` in the output bucket (see :mod:`transflow._wire.keys`),
is written when a job starts (``ok: ASSEMBLY_EXECUTING``), and again when it ends, with
``ok: ASSEMBLY_COMPLETED`` or with ``error`` and ``message``. The same record is the
completion marker that makes re-delivery of a finished job harmless, the body of webhooks,
and what ``transflow dlq peek`` shows. Keys are snake_case, as Transloadit writes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import botocore.exceptions
import cattrs

from transflow._aws.s3 import is_not_found
from transflow._version import __version__
from transflow._wire.model import ProcessingJob, format_timestamp

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ASSEMBLY_COMPLETED",
    "ASSEMBLY_EXECUTING",
    "AssemblyStatus",
    "ResultRecord",
    "UploadRecord",
    "job_fingerprint",
    "load_status",
    "save_status",
]

log = logging.getLogger(__name__)

ASSEMBLY_EXECUTING = "ASSEMBLY_EXECUTING"
"""The status record's ``ok`` while a job runs."""
ASSEMBLY_COMPLETED = "ASSEMBLY_COMPLETED"
"""The status record's ``ok`` once a job completed: the completion marker that makes a
re-delivered job harmless."""


@attrs.frozen
class UploadRecord:
    """One input of the job, as it was found in S3."""

    name: str
    bucket: str
    key: str
    size: int
    etag: str = ""
    mime: str | None = None


@attrs.frozen
class ResultRecord:
    """One output a step wrote."""

    name: str
    bucket: str
    key: str
    size: int
    mime: str
    etag: str = ""
    url: str = ""


@attrs.frozen
class AssemblyStatus:
    """An upload's status record; :attr:`completed` is the completion marker."""

    assembly_id: str
    upload_id: str
    template_id: str
    branch: str
    user: str | None
    job_fingerprint: str
    attempt: int
    execution_start: str
    ok: str | None = None
    error: str | None = None
    message: str | None = None
    step: str | None = None
    uploads: tuple[UploadRecord, ...] = ()
    results: Mapping[str, tuple[ResultRecord, ...]] = attrs.field(factory=dict)
    bytes_received: int = 0
    bytes_output: int = 0
    execution_duration: float | None = None
    last_updated: str = ""
    transflow_version: str = __version__

    @property
    def completed(self) -> bool:
        """Whether the job finished successfully."""
        return self.ok == ASSEMBLY_COMPLETED and self.error is None

    def to_json(self) -> str:
        """The record as indented JSON."""
        return json.dumps(_converter.unstructure(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> AssemblyStatus:
        """Parse a record; raises ``ValueError`` when it is not one."""
        try:
            return _converter.structure(json.loads(text), cls)
        except (cattrs.BaseValidationError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a transflow status record: {exc}") from exc


# Not transflow._wire.model.converter: that one writes the camelCase wire format, while the status
# record follows Transloadit's snake_case keys that existing dashboards read.
_converter = cattrs.Converter()


def now_text() -> str:
    """The current time as the record writes it."""
    return format_timestamp(dt.datetime.now(dt.timezone.utc))


def job_fingerprint(job: ProcessingJob) -> str:
    """A hash of everything that makes the job what it is: a re-delivery has the same one,
    a new job for the same upload (more files, other fields) does not."""
    canonical = json.dumps(job.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def load_status(s3: S3Client, bucket: str, key: str) -> AssemblyStatus | None:
    """The record at ``bucket``/``key``, or None when there is none (or it is unreadable,
    which is logged: the job then simply runs)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    try:
        return AssemblyStatus.from_json(body)
    except ValueError:
        log.warning("status record s3://%s/%s is not readable; it will be rewritten", bucket, key)
        return None


def save_status(s3: S3Client, bucket: str, key: str, status: AssemblyStatus) -> None:
    """Write the record (replacing the previous one)."""
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=status.to_json().encode("utf-8"),
        ContentType="application/json",
        CacheControl="no-cache",
    )


def status_dict(status: AssemblyStatus) -> dict[str, Any]:
    """The record as a plain JSON object (what webhooks post)."""
    data: dict[str, Any] = _converter.unstructure(status)
    return data
