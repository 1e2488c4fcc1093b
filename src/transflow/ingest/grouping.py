"""Grouping created objects into processing jobs: the bridge's decisions, without AWS.

Records are grouped by bucket, upload id and template. A group whose metadata carries the
upload's file count becomes an :class:`UploadCheck`: the bridge lists the upload's prefix
and :func:`complete_upload` turns a complete listing into one job for the whole upload. A
group without the count becomes a job of the records that arrived together (the spec's
per-event grouping). A record without an upload id is a job of its own, with an upload id
derived from its bucket and key.

Deduplication ids are deterministic (:func:`job_dedup_id`), so a duplicate S3 notification and
a race between the last two files of an upload both yield one message on the FIFO queue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.model import ProcessingJob, S3ObjectRef
from transflow._wire.naming import branch_problem
from transflow.ingest.metadata import UploadMetadata
from transflow.ingest.s3events import FailedRecord, S3Record

__all__ = [
    "HeadedRecord",
    "ListedObject",
    "Plan",
    "PlannedJob",
    "UploadCheck",
    "branch_of_key",
    "complete_upload",
    "job_dedup_id",
    "key_branch_problem",
    "plan_jobs",
    "standalone_upload_id",
    "unlisted_records",
]

_UPLOADS_ROOT = "uploads/"


@attrs.frozen
class HeadedRecord:
    """A created object with the metadata HeadObject returned for it.

    ``headed`` is False when the metadata is its upload's, read from another file of the
    same folder (:mod:`transflow.ingest.known_uploads`): no request has then shown that this
    object exists, so the upload's listing must (:func:`unlisted_records`)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    record: S3Record
    metadata: UploadMetadata
    etag: str | None = None
    headed: bool = True

    @property
    def version(self) -> str:
        """Sequencer, else ETag (from the event, else from HeadObject), else empty."""
        return self.record.sequencer or self.record.etag or self.etag or ""


@attrs.frozen
class ListedObject:
    """One object of an upload's prefix, as ListObjectsV2 returned it."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    key: str
    etag: str


@attrs.frozen
class PlannedJob:
    """A job to send, its deduplication id, and the records it accounts for."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    job: ProcessingJob
    job_dedup_id: str
    records: tuple[S3Record, ...]


@attrs.frozen
class UploadCheck:
    """A group of records of an upload that knows its file count: list ``prefix`` in
    ``bucket`` to learn whether every file has arrived."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    bucket: str
    prefix: str
    expected: int
    records: tuple[HeadedRecord, ...]

    @property
    def upload_id(self) -> str:
        """The upload these records belong to (every record of the group has the same)."""
        upload_id = self.records[0].metadata.upload_id
        assert upload_id is not None
        return upload_id


@attrs.frozen
class Plan:
    """What to do with a set of records: jobs to send now, uploads to check, failures."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    jobs: tuple[PlannedJob, ...] = ()
    checks: tuple[UploadCheck, ...] = ()
    failed: tuple[FailedRecord, ...] = ()


def job_dedup_id(upload_id: str, objects: Iterable[tuple[str, str, str]]) -> str:
    """The MessageDeduplicationId of a job: sha256 (hex, 64 characters) of the upload id
    and its objects' ``(bucket, key, version)``, sorted, so the same objects always give the
    same id whatever order their notifications came in."""
    canonical = json.dumps([upload_id, sorted(set(objects))], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def standalone_upload_id(bucket: str, key: str) -> str:
    """The upload id of an object uploaded without one: stable for the same bucket and key,
    so its duplicate notifications share a group and a deduplication id."""
    digest = hashlib.sha256(f"{bucket}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"s3-{digest[:40]}"


def branch_of_key(key: str) -> str | None:
    """The branch of a key laid out as ``uploads/{branch}/…``, or None."""
    if not key.startswith(_UPLOADS_ROOT):
        return None
    branch, slash, _rest = key[len(_UPLOADS_ROOT) :].partition("/")
    return branch if slash and branch else None


def key_branch_problem(key: str) -> str | None:
    """Why the branch segment of an ``uploads/{branch}/…`` key cannot be used, or None.

    The branch becomes part of the job's channel (``upload:{branch}:{uploadId}``) and of
    its output keys, so it must already be in its canonical form
    (:func:`~transflow._wire.naming.sanitize_branch`): ``main:evil``, ``..``, ``Main`` or an
    empty segment would reach subscribers of another channel or climb out of
    ``outputs/{branch}/``. Keys outside ``uploads/`` have no branch (the default applies)."""
    if not key.startswith(_UPLOADS_ROOT):
        return None
    segment, slash, _rest = key[len(_UPLOADS_ROOT) :].partition("/")
    if not slash:
        return None
    problem = branch_problem(segment)
    if problem is None:
        return None
    return (
        f"the key's branch segment: {problem}; uploads go to uploads/{{branch}}/ with the "
        "branch create_upload writes, so this object was not uploaded through it"
    )


def _upload_prefix_of(key: str, upload_id: str) -> str | None:
    """The folder of the upload when the key sits directly in ``…/{uploadId}/``."""
    folder, slash, _name = key.rpartition("/")
    if slash and folder.rpartition("/")[2] == upload_id:
        return folder + "/"
    return None


def _job(
    upload_id: str,
    headed: Sequence[HeadedRecord],
    objects: Sequence[S3ObjectRef],
    default_branch: str,
) -> ProcessingJob:
    meta = headed[0].metadata
    return ProcessingJob(
        upload_id=upload_id,
        template_id=meta.template_id,
        objects=objects,
        branch=branch_of_key(headed[0].record.key) or default_branch,
        fields=dict(meta.fields),
        user=meta.user,
        traceparent=meta.trace.traceparent if meta.trace else None,
        tracestate=meta.trace.tracestate if meta.trace else None,
    )


def _failures(headed: Iterable[HeadedRecord], reason: str) -> list[FailedRecord]:
    return [
        FailedRecord(
            h.record.ref, reason, h.record.message_id, h.record.bucket, h.record.key, False
        )
        for h in headed
    ]


def _per_event_job(
    upload_id: str, members: Sequence[HeadedRecord], default_branch: str
) -> PlannedJob | list[FailedRecord]:
    # One object per key, in key order, naming its newest version seen (by S3's sequencer);
    # every version seen goes into the dedup id.
    newest: dict[str, HeadedRecord] = {}
    for h in sorted(
        members, key=lambda h: (len(h.record.sequencer or ""), h.record.sequencer or "")
    ):
        newest[h.record.key] = h
    bucket = members[0].record.bucket
    refs = [
        S3ObjectRef(
            bucket,
            k,
            etag=newest[k].etag or newest[k].record.etag,
            version_id=newest[k].record.version_id,
        )
        for k in sorted(newest)
    ]
    try:
        job = _job(upload_id, members, refs, default_branch)
    except (TypeError, ValueError) as exc:
        return _failures(members, f"cannot build a processing job: {exc}")
    versions = [(h.record.bucket, h.record.key, h.version) for h in members]
    return PlannedJob(job, job_dedup_id(upload_id, versions), tuple(h.record for h in members))


def plan_jobs(
    headed: Sequence[HeadedRecord], *, default_branch: str = "main", whole_uploads: bool = True
) -> Plan:
    """Group records into jobs and upload checks. Every record ends up in exactly one job,
    one check or one failure."""
    # (bucket, upload id, template id, whether the upload id is ours) -> records
    groups: dict[tuple[str, str, str, bool], list[HeadedRecord]] = {}
    for item in headed:
        upload_id = item.metadata.upload_id
        standalone = upload_id is None
        if upload_id is None:
            upload_id = standalone_upload_id(item.record.bucket, item.record.key)
        group = (item.record.bucket, upload_id, item.metadata.template_id, standalone)
        groups.setdefault(group, []).append(item)
    jobs: list[PlannedJob] = []
    checks: list[UploadCheck] = []
    failed: list[FailedRecord] = []
    for (bucket, upload_id, _template, standalone), members in groups.items():
        counts = [h.metadata.file_count for h in members if h.metadata.file_count]
        prefix = None if standalone else _upload_prefix_of(members[0].record.key, upload_id)
        if whole_uploads and counts and prefix is not None:
            checks.append(UploadCheck(bucket, prefix, max(counts), tuple(members)))
            continue
        planned = _per_event_job(upload_id, members, default_branch)
        if isinstance(planned, PlannedJob):
            jobs.append(planned)
        else:
            failed.extend(planned)
    return Plan(tuple(jobs), tuple(checks), tuple(failed))


def unlisted_records(
    check: UploadCheck, listed: Sequence[ListedObject]
) -> tuple[UploadCheck | None, list[FailedRecord]]:
    """The check without the records that were never headed and whose object the listing
    does not hold, and those records' failures.

    Such a record's notification names an object S3 does not have (deleted since, or a
    forged notification): like a HeadObject answering 404, it fails alone and emits
    nothing. A headed record is kept as before: its HeadObject showed the object."""
    present = {obj.key for obj in listed}
    gone = [h for h in check.records if not h.headed and h.record.key not in present]
    if not gone:
        return check, []
    failures = _failures(
        gone,
        "the object is gone: its upload's folder listing does not hold it (deleted or "
        "overwritten before the bridge read it, or never written); nothing to process",
    )
    kept = tuple(h for h in check.records if h.headed or h.record.key in present)
    return (attrs.evolve(check, records=kept) if kept else None), failures


def complete_upload(
    check: UploadCheck, listed: Sequence[ListedObject], *, default_branch: str = "main"
) -> PlannedJob | list[FailedRecord] | None:
    """The job of a whole upload when the listing holds all its files, else None (more
    files are still to come; the last one's notification will emit the job).

    The deduplication id comes from the listing alone (keys and ETags), so every invocation
    that sees the complete upload computes the same one and the queue keeps one message.
    """
    if len(listed) < check.expected:
        return None
    upload_id = check.upload_id
    etags = {obj.key: obj.etag for obj in listed}
    try:
        job = _job(
            upload_id,
            check.records,
            [S3ObjectRef(check.bucket, k, etag=etags[k] or None) for k in sorted(etags)],
            default_branch,
        )
    except (TypeError, ValueError) as exc:
        return _failures(check.records, f"cannot build a processing job: {exc}")
    versions = [(check.bucket, obj.key, obj.etag) for obj in listed]
    return PlannedJob(
        job, job_dedup_id(upload_id, versions), tuple(h.record for h in check.records)
    )
