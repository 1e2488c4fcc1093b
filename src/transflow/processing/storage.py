"""Where a job's bytes live: its inputs, its outputs, its status record and its claim check.

The processor talks to :class:`JobStorage`, a Protocol; :class:`S3JobStorage` is the
implementation over an S3 client. Keeping the transfers here leaves the processor with the
order of things and :mod:`transflow.processing.attempt` with the decisions.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import botocore.exceptions

from transflow._aws.claimcheck import MAX_CLAIM_CHECK_BYTES, ClaimCheck, load_claimed_job
from transflow._aws.s3 import error_code, is_not_found
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.model import ProcessingJob
from transflow.errors import TransflowError
from transflow.processing.context import InputFile, JobInputs
from transflow.processing.status import AssemblyStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "SINGLE_PUT_BYTES",
    "InputUnavailableError",
    "JobStorage",
    "S3JobStorage",
    "StatusConflict",
    "StoredStatus",
    "local_input_name",
    "read_status_record",
    "write_status_record",
]

log = logging.getLogger(__name__)

# Files up to this size go up in one PutObject (which returns the ETag); larger ones as a
# multipart upload.
SINGLE_PUT_BYTES = 64 * 1024 * 1024
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+=@,-]+")


class InputUnavailableError(TransflowError):
    """An input of the job could not be downloaded."""


class StatusConflict(TransflowError):
    """A conditional status-record write found the record changed since it was read (S3's
    412 PreconditionFailed): another delivery of the job wrote it."""


@attrs.frozen
class StoredStatus:
    """A status record as read, with the ETag a conditional write names (both None when
    there is no record; an unreadable record has an ETag and no record)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    record: AssemblyStatus | None
    etag: str | None


class JobStorage(Protocol):
    """What the processor reads and writes for a job."""

    def read_status_record(self, bucket: str, key: str) -> AssemblyStatus | None:
        """The status record at ``bucket``/``key``, or None when there is none."""
        ...

    def write_status_record(self, bucket: str, key: str, record: AssemblyStatus) -> None:
        """Write (replace) the status record."""
        ...

    def read_status(self, bucket: str, key: str) -> StoredStatus:
        """The status record and its ETag."""
        ...

    def put_status_record(
        self, bucket: str, key: str, record: AssemblyStatus, *, if_match: str | None
    ) -> str:
        """Write the record only if the stored one is still ``if_match`` (an ETag), or,
        with None, only if there is none; return the new ETag. Raises
        :class:`StatusConflict` when the record changed in between."""
        ...

    def open_inputs(self, job: ProcessingJob, directory: Path) -> JobInputs:
        """The inputs of ``job``, each downloaded into ``directory`` (created here) when a
        step first takes it; taking one that cannot be read raises
        :class:`InputUnavailableError` naming it."""
        ...

    def store_output(self, local_path: Path, bucket: str, key: str, content_type: str) -> str:
        """Stream a local file to ``bucket``/``key``; return its ETag ("" when unknown)."""
        ...

    def fetch_output(self, bucket: str, key: str, local_path: Path) -> None:
        """Download an output the job wrote (in an earlier delivery) to ``local_path``."""
        ...

    def output_unchanged(self, bucket: str, key: str, etag: str, size: int) -> bool:
        """Whether the output a checkpoint recorded is still there as it was written (same
        ETag when one was recorded, same size): one HeadObject."""
        ...

    def read_claimed_job(
        self, claim: ClaimCheck, *, max_bytes: int = MAX_CLAIM_CHECK_BYTES
    ) -> ProcessingJob:
        """The job a claim check points at; raises
        :class:`~transflow.errors.JobConfinementError`, having read no more than
        ``max_bytes`` + 1 bytes, when it is larger."""
        ...


def local_input_name(key: str, taken: set[str]) -> str:
    """A safe, unique file name for the input at ``key``, keeping its base name and
    extension readable (``a.wav``, then ``a-1.wav`` for a second ``a.wav``)."""
    base = _UNSAFE_NAME.sub("_", key.rsplit("/", 1)[-1]).lstrip(".")[:200] or "input"
    stem, dot, ext = base.rpartition(".")
    if not stem:
        stem, dot, ext = base, "", ""
    name, n = base, 0
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}{dot}{ext}"
    taken.add(name.lower())
    return name


def read_status_record(s3: S3Client, bucket: str, key: str) -> AssemblyStatus | None:
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


def write_status_record(s3: S3Client, bucket: str, key: str, record: AssemblyStatus) -> None:
    """Write the record (replacing the previous one)."""
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=record.to_json().encode("utf-8"),
        ContentType="application/json",
        CacheControl="no-cache",
    )


def _etag(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@attrs.frozen
class S3JobStorage:
    """:class:`JobStorage` over an S3 client."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    s3: S3Client

    def read_status(self, bucket: str, key: str) -> StoredStatus:
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                return StoredStatus(None, None)
            raise
        etag = _etag(response.get("ETag"))
        try:
            return StoredStatus(AssemblyStatus.from_json(response["Body"].read()), etag)
        except ValueError:
            log.warning(
                "status record s3://%s/%s is not readable; it will be rewritten", bucket, key
            )
            return StoredStatus(None, etag)

    def put_status_record(
        self, bucket: str, key: str, record: AssemblyStatus, *, if_match: str | None
    ) -> str:
        condition: dict[str, Any] = (
            {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        )
        try:
            response = self.s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=record.to_json().encode("utf-8"),
                ContentType="application/json",
                CacheControl="no-cache",
                **condition,
            )
        except botocore.exceptions.ClientError as exc:
            # 409 ConditionalRequestConflict: a concurrent conditional write to the key.
            if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise StatusConflict(
                    f"status record s3://{bucket}/{key} changed since it was read"
                ) from exc
            raise
        return _etag(response.get("ETag")) or ""

    def read_status_record(self, bucket: str, key: str) -> AssemblyStatus | None:
        return read_status_record(self.s3, bucket, key)

    def write_status_record(self, bucket: str, key: str, record: AssemblyStatus) -> None:
        write_status_record(self.s3, bucket, key, record)

    def open_inputs(self, job: ProcessingJob, directory: Path) -> JobInputs:
        directory.mkdir(parents=True)
        taken: set[str] = set()
        # Names are given up front, so an input's local name does not depend on which
        # inputs the steps happened to open first.
        paths = [directory / local_input_name(ref.key, taken) for ref in job.objects]
        return JobInputs(job.objects, lambda index: self._download(job, index, paths[index]))

    def _download(self, job: ProcessingJob, index: int, path: Path) -> InputFile:
        ref = job.objects[index]
        try:
            response = self.s3.get_object(Bucket=ref.bucket, Key=ref.key)
            with response["Body"] as body, path.open("wb") as out:
                shutil.copyfileobj(body, out, 1024 * 1024)  # streamed: bounded memory
        except Exception as exc:
            raise InputUnavailableError(
                f"input s3://{ref.bucket}/{ref.key} cannot be downloaded ({exc}); check "
                "that it exists and that the processor may read it"
            ) from exc
        return InputFile(
            path=path,
            name=ref.key.rsplit("/", 1)[-1],
            bucket=ref.bucket,
            key=ref.key,
            size=path.stat().st_size,
            etag=str(response.get("ETag", "")).strip('"'),
            content_type=response.get("ContentType"),
            metadata=dict(response.get("Metadata", {})),
        )

    def store_output(self, local_path: Path, bucket: str, key: str, content_type: str) -> str:
        if local_path.stat().st_size <= SINGLE_PUT_BYTES:
            with local_path.open("rb") as body:
                response = self.s3.put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType=content_type
                )
            return response.get("ETag", "").strip('"')
        self.s3.upload_file(str(local_path), bucket, key, ExtraArgs={"ContentType": content_type})
        return ""

    def fetch_output(self, bucket: str, key: str, local_path: Path) -> None:
        response = self.s3.get_object(Bucket=bucket, Key=key)
        with response["Body"] as body, local_path.open("wb") as out:
            shutil.copyfileobj(body, out, 1024 * 1024)

    def output_unchanged(self, bucket: str, key: str, etag: str, size: int) -> bool:
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if not is_not_found(exc):
                # Unknown is not unchanged: the step runs again, which is always safe.
                log.warning(
                    "checkpointed output s3://%s/%s cannot be checked: %s", bucket, key, exc
                )
            return False
        stored = str(head.get("ETag", "")).strip('"')
        return (not etag or stored == etag) and head.get("ContentLength") == size

    def read_claimed_job(
        self, claim: ClaimCheck, *, max_bytes: int = MAX_CLAIM_CHECK_BYTES
    ) -> ProcessingJob:
        return load_claimed_job(self.s3, claim, max_bytes=max_bytes)
