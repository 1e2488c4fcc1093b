"""Cancelling an upload: ``ok: ASSEMBLY_CANCELED`` in its status record.

The record is the one place the bridge, the processor and the canceller agree on, and every
write of it is conditional (If-Match on the ETag read, If-None-Match when there is none), so
a cancellation never overwrites a completion and a completion never overwrites a
cancellation: whichever write lands first wins, the other sees 412 and follows it.
:func:`cancel_decision` and :func:`canceled_record` are the pure half; :func:`cancel_upload`
performs them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from transflow._wire.cancelmark import ASSEMBLY_CANCELED
from transflow._wire.keys import status_key
from transflow._wire.naming import branch_problem
from transflow.errors import ConfigError
from transflow.processing.status import (
    AssemblyStatus,
    ResultRecord,
    now_text,
)
from transflow.processing.storage import S3JobStorage, StatusConflict

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "cancel_decision",
    "cancel_upload",
    "canceled_record",
    "delete_results",
]

log = logging.getLogger(__name__)

_MAX_TRIES = 5
"""Conditional writes tried before giving up: each refusal means the processor wrote the
record in between (a checkpoint), so a few are plenty."""


class CancelOutcome(enum.Enum):
    """What :func:`cancel_upload` found and did."""

    CANCELED = "canceled"
    """The record now says ``ASSEMBLY_CANCELED``: the job stops before its next step, or
    is never queued or run."""
    ALREADY_CANCELED = "already-canceled"
    """It was cancelled before; nothing was written (cancelling twice is harmless)."""
    TOO_LATE = "too-late"
    """The job completed first; nothing was written and its outputs stay."""


@attrs.frozen
class CancelResult:
    """The outcome of :func:`cancel_upload`, with the record as stored after it."""

    upload_id: str
    outcome: CancelOutcome
    record: AssemblyStatus
    deleted: tuple[str, ...] = ()
    """Keys of outputs deleted (``delete_outputs=True``)."""

    @property
    def canceled(self) -> bool:
        """Whether the upload is cancelled now (by this call or an earlier one)."""
        return self.outcome is not CancelOutcome.TOO_LATE

    @property
    def too_late(self) -> bool:
        """Whether the job had completed already."""
        return self.outcome is CancelOutcome.TOO_LATE


def cancel_decision(stored: AssemblyStatus | None) -> CancelOutcome:
    """What cancelling does to an upload whose record is ``stored``: a record that is
    missing, executing or failed is cancelled; a completed one is left alone."""
    if stored is None:
        return CancelOutcome.CANCELED
    if stored.canceled:
        return CancelOutcome.ALREADY_CANCELED
    if stored.completed:
        return CancelOutcome.TOO_LATE
    return CancelOutcome.CANCELED


def canceled_record(
    stored: AssemblyStatus | None,
    *,
    branch: str,
    upload_id: str,
    user_id: str | None,
    now: str,
    reason: str | None = None,
    delete_outputs: bool = False,
) -> AssemblyStatus:
    """The record that marks the upload cancelled: ``stored`` with ``ok`` changed (what the
    job did so far stays listed), or a new one when no job has started yet."""
    message = reason or "cancelled"
    if stored is None:
        return AssemblyStatus(
            assembly_id=upload_id,
            upload_id=upload_id,
            template_id="",
            branch=branch,
            user=user_id,
            job_fingerprint="",
            attempt=0,
            execution_start=now,
            ok=ASSEMBLY_CANCELED,
            message=message,
            last_updated=now,
            delete_outputs=delete_outputs,
        )
    return attrs.evolve(
        stored,
        ok=ASSEMBLY_CANCELED,
        error=None,
        message=message,
        last_updated=now,
        delete_outputs=delete_outputs,
    )


def delete_results(
    s3_client: S3Client, results: Mapping[str, Iterable[ResultRecord]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Delete the outputs ``results`` lists: ``(deleted keys, keys that failed)``; a
    failure is logged, never raised (the cancellation stands either way)."""
    deleted: list[str] = []
    failed: list[str] = []
    for records in results.values():
        for result in records:
            try:
                s3_client.delete_object(Bucket=result.bucket, Key=result.key)
            except Exception as exc:
                log.warning(
                    "output s3://%s/%s of a cancelled upload was not deleted: %s",
                    result.bucket,
                    result.key,
                    exc,
                )
                failed.append(result.key)
            else:
                deleted.append(result.key)
    return tuple(deleted), tuple(failed)


def _check(branch: object, upload_id: object, user_id: object) -> None:
    problems = []
    problem = branch_problem(branch) if isinstance(branch, str) else "must be text"
    if problem is not None:
        problems.append(f"branch {branch!r:.80}: {problem}")
    if (
        not isinstance(upload_id, str)
        or not upload_id
        or len(upload_id) > 128
        or "/" in upload_id
        or upload_id.startswith(".")
        or ".." in upload_id
        or not upload_id.isascii()
        or not all(c.isalnum() or c in "-_." for c in upload_id)
    ):
        problems.append(
            f"upload id {upload_id!r:.80} is not one (1-128 letters, digits, '-', '_' or '.', "
            "as create_upload returns it)"
        )
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        problems.append(f"user_id {user_id!r:.80} must be a non-empty string or None")
    if problems:
        raise ConfigError("cannot cancel: " + "; ".join(problems))


def cancel_upload(
    s3_client: S3Client,
    *,
    bucket: str,
    branch: str,
    upload_id: str,
    user_id: str | None = None,
    delete_outputs: bool = False,
    reason: str | None = None,
) -> CancelResult:
    """Cancel upload ``upload_id`` of ``branch`` (and ``user_id``, as given to
    ``create_upload``): mark its status record in the output ``bucket``
    ``ASSEMBLY_CANCELED``.

    The write is conditional on the record as read, so it never overwrites a completion: when
    the job completed first, the result says :attr:`~CancelResult.too_late`. Cancelling twice
    is harmless. With ``delete_outputs``, the outputs the record lists are deleted now and
    the processor deletes those it writes before it stops. Raises :class:`ConfigError` for a
    malformed branch, upload id or user id; AWS errors other than the 412 of a concurrent
    write propagate."""
    _check(branch, upload_id, user_id)
    storage = S3JobStorage(s3_client)
    key = status_key(branch, upload_id, user_id)
    for _ in range(_MAX_TRIES):
        stored = storage.read_status(bucket, key)
        outcome = cancel_decision(stored.record)
        if outcome is not CancelOutcome.CANCELED:
            assert stored.record is not None
            log.info("upload %s: not cancelled again: %s", upload_id, outcome.value)
            return CancelResult(upload_id, outcome, stored.record)
        record = canceled_record(
            stored.record,
            branch=branch,
            upload_id=upload_id,
            user_id=user_id,
            now=now_text(),
            reason=reason,
            delete_outputs=delete_outputs,
        )
        try:
            storage.put_status_record(bucket, key, record, if_match=stored.etag)
        except StatusConflict:
            continue  # the processor wrote in between: read it again and decide again
        deleted: tuple[str, ...] = ()
        if delete_outputs:
            deleted, _ = delete_results(s3_client, record.results)
        log.warning("upload %s of branch %s cancelled", upload_id, branch)
        return CancelResult(upload_id, CancelOutcome.CANCELED, record, deleted)
    raise StatusConflict(
        f"the status record s3://{bucket}/{key} kept changing while it was cancelled "
        f"({_MAX_TRIES} tries); try again"
    )
