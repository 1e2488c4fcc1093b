"""The status record of an upload: a Transloadit-like assembly, JSON in S3.

It lives at ``{output prefix}status.json`` in the output bucket (see :mod:`transflow._wire.keys`),
is written when a job starts (``ok: ASSEMBLY_EXECUTING``), after each checkpointed step (its
name joins ``checkpoints``, its outputs ``results``), and again when it ends, with
``ok: ASSEMBLY_COMPLETED`` or with ``error`` and ``message`` (``ok: ASSEMBLY_CANCELED`` once the
upload was cancelled, see :mod:`~transflow.processing.cancellation`). The same record is the
completion marker that makes re-delivery of a finished job harmless, the body of webhooks,
and what ``transflow dlq peek`` shows. Keys are snake_case, as Transloadit writes them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from transflow._version import __version__
from transflow._wire.cancelmark import ASSEMBLY_CANCELED
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.model import ProcessingJob, format_timestamp

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "ASSEMBLY_COMPLETED",
    "ASSEMBLY_EXECUTING",
    "AssemblyStatus",
    "ResultRecord",
    "UploadRecord",
    "job_fingerprint",
    "status_record_dict",
    "webhook_delivery_id",
]

ASSEMBLY_EXECUTING = "ASSEMBLY_EXECUTING"
"""The status record's ``ok`` while a job runs."""
ASSEMBLY_COMPLETED = "ASSEMBLY_COMPLETED"
"""The status record's ``ok`` once a job completed: the completion marker that makes a
re-delivered job harmless."""


@attrs.frozen
class UploadRecord:
    """One input of the job, as it was found in S3 (``mime`` in the JSON record)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    name: str
    bucket: str
    key: str
    size: int
    etag: str = ""
    content_type: str | None = None


@attrs.frozen
class ResultRecord:
    """One output a step wrote, as the status record lists it (``mime`` in the JSON record);
    the step got it as an :class:`~transflow.processing.context.OutputFile`."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    name: str
    bucket: str
    key: str
    size: int
    content_type: str
    etag: str = ""
    url: str = ""


@attrs.frozen
class AssemblyStatus:
    """An upload's status record; :attr:`completed` is the completion marker."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

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
    checkpoints: tuple[str, ...] = ()
    """The steps this job finished with their outputs recorded in ``results``, in order: a
    redelivery of the same job (same fingerprint) resumes after them."""
    bytes_received: int = 0
    bytes_output: int = 0
    execution_duration: float | None = None
    last_updated: str = ""
    transflow_version: str = __version__
    delete_outputs: bool = False
    """Set with ``ok: ASSEMBLY_CANCELED`` when the canceller asked for the outputs to be
    deleted: the processor deletes those it wrote before it stopped."""
    message_id: str | None = None
    """The SQS message id of the delivery that wrote the record (None when the job was not
    run from a message, or by an older version): a redelivery of that very message is told
    from another message with the same job by it."""
    done_seq: int | None = None
    """In a completed record: the ``seq`` of the job's ``done`` event, reserved before the
    record was written and the event sent after it."""
    done_token: str | None = None
    """In a completed record: the attempt token in the ``done`` event's deduplication id
    (``{uploadId}:{token}:{seq}``). A redelivery of the message sends that ``done`` again
    under the same identity: the queue (within its five-minute deduplication window) or
    the hub (a ``seq`` it dispatched) drops it when it went, a browser gets it when it
    did not."""

    @property
    def canceled(self) -> bool:
        """Whether the upload was cancelled (``ok: ASSEMBLY_CANCELED``)."""
        return self.ok == ASSEMBLY_CANCELED

    @property
    def completed(self) -> bool:
        """Whether the job finished successfully."""
        return self.ok == ASSEMBLY_COMPLETED and self.error is None

    def to_json(self) -> str:
        """The record as indented JSON."""
        return json.dumps(_converter().unstructure(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> AssemblyStatus:
        """Parse a record; raises ``ValueError`` when it is not one."""
        converter = _converter()
        import cattrs  # noqa: PLC0415 - loaded by _converter

        try:
            return converter.structure(json.loads(text), cls)
        except (cattrs.BaseValidationError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a transflow status record: {exc}") from exc


# Not transflow._wire.model.converter: that one writes the camelCase wire format, while the status
# record follows Transloadit's snake_case keys that existing dashboards read.
# Transloadit's key for the content type is "mime"; the attribute says what it holds.
_MIME_RECORDS = (UploadRecord, ResultRecord)


@functools.cache
def _converter() -> cattrs.Converter:
    # Made (and cattrs imported) on first use, so a cold start does not pay for them.
    import cattrs  # noqa: PLC0415
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override  # noqa: PLC0415

    conv = cattrs.Converter()
    conv.register_unstructure_hook_factory(
        lambda cls: cls in _MIME_RECORDS,
        lambda cls: make_dict_unstructure_fn(cls, conv, content_type=override(rename="mime")),
    )
    conv.register_structure_hook_factory(
        lambda cls: cls in _MIME_RECORDS,
        lambda cls: make_dict_structure_fn(cls, conv, content_type=override(rename="mime")),
    )
    return conv


def now_text() -> str:
    """The current time as the record writes it."""
    return format_timestamp(dt.datetime.now(dt.timezone.utc))


def job_fingerprint(job: ProcessingJob) -> str:
    """A hash of everything that makes the job what it is: a re-delivery has the same one,
    a new job for the same upload (more files, other fields) does not. The trace context
    is left out: it says who watched the job, not what it is, and a bridge that sends the
    job again continues the trace from a new span."""
    data = job.to_dict()
    for name in ("traceparent", "tracestate"):
        data.pop(name, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def webhook_delivery_id(record: AssemblyStatus) -> str:
    """The id every delivery of the webhook of ``record`` carries (``X-Transflow-Delivery-Id``):
    the same when a redelivered job posts it again (webhooks are at least once), another
    for another outcome or another job of the upload. 32 hex digits of SHA-256 over fields
    of the signed body, so a receiver that needs it tamper-proof can recompute it:
    ``upload_id``, ``job_fingerprint``, ``attempt``, ``execution_start``, ``ok`` and
    ``error`` (none as empty text), joined with newlines."""
    parts = (
        record.upload_id,
        record.job_fingerprint,
        str(record.attempt),
        record.execution_start,
        record.ok or "",
        record.error or "",
    )
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def status_record_dict(record: AssemblyStatus) -> dict[str, Any]:
    """The record as a plain JSON object (what webhooks post)."""
    data: dict[str, Any] = _converter().unstructure(record)
    return data
