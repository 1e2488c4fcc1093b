"""The upload metadata format: what :func:`~transflow.ingest.uploads.create_upload` writes
into each object's ``x-amz-meta-*`` fields and what the bridge reads back.

One module owns the format, and it is apart from the presigning side so that the bridge's
Lambda loads only what it reads.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.jsontext import JsonTextError, parse_json, type_name
from transflow._wire.keys import user_folder
from transflow._wire.limits import is_sqs_id
from transflow._wire.model import JsonValue, UserContext
from transflow._wire.trace import TraceContext, parse_trace
from transflow.errors import UploadMetadataError

__all__ = [
    "MAX_METADATA_BYTES",
    "METADATA_KEYS",
    "UploadMetadata",
    "encode_fields",
    "read_upload_metadata",
]

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 2048
"""S3's limit on user metadata: the UTF-8 bytes of every key and value together."""

META_UPLOAD_ID = "uploadid"
META_TEMPLATE_ID = "templateid"
META_FIELDS = "fields"
META_USER_ID = "userid"
META_PERMISSIONS = "permissions"
META_FILE_COUNT = "filecount"
META_TRACEPARENT = "traceparent"
META_TRACESTATE = "tracestate"
METADATA_KEYS = (
    META_UPLOAD_ID,
    META_TEMPLATE_ID,
    META_FIELDS,
    META_USER_ID,
    META_PERMISSIONS,
    META_FILE_COUNT,
    META_TRACEPARENT,
    META_TRACESTATE,
)
"""The ``x-amz-meta-*`` keys an upload carries (without the prefix, as HeadObject returns)."""


def encode_fields(fields: Mapping[str, JsonValue]) -> str:
    """``fields`` as the upload metadata carries them: base64 of compact JSON."""
    text = json.dumps(dict(fields), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# Spellings accepted on read, first wins: what create_upload writes, then the dashed forms
# other uploaders use. HeadObject returns metadata keys in lower case.
_SPELLINGS = {
    META_UPLOAD_ID: ("uploadid", "upload-id", "upload_id"),
    META_TEMPLATE_ID: ("templateid", "template-id", "template_id"),
    META_USER_ID: ("userid", "user-id", "user_id"),
    META_FIELDS: ("fields",),
    META_PERMISSIONS: ("permissions",),
    META_FILE_COUNT: ("filecount", "file-count", "file_count"),
    META_TRACEPARENT: ("traceparent",),
    META_TRACESTATE: ("tracestate",),
}


@attrs.frozen
class UploadMetadata:
    """What an uploaded object's metadata says about its upload."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    template_id: str
    upload_id: str | None = None
    fields: Mapping[str, JsonValue] = attrs.field(factory=dict)
    user_id: str | None = None
    permissions: tuple[str, ...] = ()
    file_count: int | None = None
    trace: TraceContext | None = None

    @property
    def user(self) -> UserContext | None:
        """The uploader, when the metadata names one: by the folder name its files were
        uploaded to (:func:`~transflow._wire.keys.user_folder`), the one name its outputs
        go under, so a user id such as ``victim/x`` or ``..`` can never reach another
        folder."""
        if not self.user_id:
            return None
        return UserContext(user_folder(self.user_id), permissions=self.permissions)


def _lookup(meta: Mapping[str, str], name: str) -> str | None:
    for spelling in _SPELLINGS[name]:
        if spelling in meta:
            return meta[spelling]
    return None


def _decode_fields(text: str, problems: list[str]) -> dict[str, JsonValue]:
    raw = text.strip()
    if raw.startswith("{"):
        data_text = raw  # plain JSON: never valid base64, so it cannot be misread
    else:
        try:
            padded = raw + "=" * (-len(raw) % 4)
            decoded = (
                base64.urlsafe_b64decode(padded)
                if "-" in raw or "_" in raw
                else base64.b64decode(padded, validate=True)
            )
            data_text = decoded.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            problems.append("fields: not valid base64 of UTF-8 JSON")
            return {}
    try:
        data = parse_json(data_text)
    except JsonTextError as exc:
        problems.append(f"fields: the base64 decodes, but not to readable JSON ({exc})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"fields: must be a JSON object, not {type_name(data)}")
        return {}
    return data


def read_upload_metadata(key: str, metadata: Mapping[str, str]) -> UploadMetadata:
    """Parse an object's user metadata (HeadObject's ``Metadata``) into
    :class:`UploadMetadata`.

    Raises :class:`~transflow.UploadMetadataError` listing every problem: a missing template
    id, ``fields`` that are not base64 of a JSON object, ``permissions`` that are not a JSON
    array of strings, a file count that is not a positive integer, an upload id that cannot
    be an SQS MessageGroupId.
    """
    meta = {str(k).lower(): str(v) for k, v in metadata.items()}
    problems: list[str] = []
    template_id = (_lookup(meta, META_TEMPLATE_ID) or "").strip()
    if not template_id:
        problems.append(
            "templateid: missing, so no template can process this object "
            "(it was not uploaded through create_upload)"
        )
    upload_id = (_lookup(meta, META_UPLOAD_ID) or "").strip() or None
    if upload_id is not None and not is_sqs_id(upload_id):
        problems.append(
            f"uploadid: {upload_id!r} cannot be an SQS MessageGroupId "
            "(1-128 ASCII letters, digits or punctuation)"
        )
    fields_text = _lookup(meta, META_FIELDS)
    fields = _decode_fields(fields_text, problems) if fields_text else {}
    permissions: tuple[str, ...] = ()
    permissions_text = _lookup(meta, META_PERMISSIONS)
    if permissions_text:
        try:
            parsed = parse_json(permissions_text)
        except JsonTextError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            permissions = tuple(parsed)
        else:
            problems.append("permissions: must be a JSON array of strings")
    file_count: int | None = None
    count_text = _lookup(meta, META_FILE_COUNT)
    if count_text is not None and count_text.strip():
        text = count_text.strip()
        if text.isdigit() and text.isascii() and int(text) > 0:
            file_count = int(text)
        else:
            problems.append(f"filecount: {count_text!r} is not a positive integer")
    if problems:
        raise UploadMetadataError(key, problems)
    traceparent = _lookup(meta, META_TRACEPARENT)
    trace = parse_trace(traceparent, _lookup(meta, META_TRACESTATE))
    if traceparent is not None and trace is None:
        # The object is still processed: the bridge starts a new trace for it.
        log.warning("upload object %s: ignoring malformed traceparent %r", key, traceparent[:80])
    return UploadMetadata(
        template_id=template_id,
        upload_id=upload_id,
        fields=fields,
        user_id=(_lookup(meta, META_USER_ID) or "").strip() or None,
        permissions=permissions,
        file_count=file_count,
        trace=trace,
    )
