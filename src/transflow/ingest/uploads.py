"""Presigned uploads: what a host's "create upload" endpoint calls.

:func:`create_upload` checks every file up front (name, content type, declared size), picks
the keys (``uploads/{branch}/[users/{userId}/]{uploadId}/{filename}``) and signs one
presigned **POST** per file whose policy pins the exact key, the content type, a
``content-length-range`` and every ``x-amz-meta-*`` field the bridge reads, so S3 itself
refuses an upload that strays from what was signed. A file declared larger than
``multipart_threshold`` goes up as an S3 **multipart** upload instead: the upload is begun
here (CreateMultipartUpload, with the same key, content type and metadata), and
:mod:`transflow.ingest.multipart` signs its parts on demand and checks it at completion.
Framework-agnostic: return ``ticket.to_dict()`` as the endpoint's JSON.

The metadata written here is read back on the bridge's side: its format (the keys, the
encoding of ``fields``, :func:`read_upload_metadata`) lives in :mod:`transflow.ingest.metadata`,
so that one module owns it and the bridge's cold start does not load the signing side.

About 650 lines: :func:`create_upload` is split into its steps (checks, plan, POST signing,
multipart begin, token) below it, and the steps read best next to the one function that
runs them; the multipart arithmetic is :mod:`transflow.ingest.parts`'s.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import botocore.exceptions

from transflow._aws.tracing import current_trace
from transflow._wire.channels import upload_channel
from transflow._wire.keys import upload_prefix
from transflow._wire.model import JsonValue, UserContext, converter
from transflow._wire.naming import sanitize_branch
from transflow._wire.safenames import safe_filename
from transflow._wire.tokens import (
    DEFAULT_TOKEN_TTL,
    MAX_TOKEN_TTL,
    StreamSecret,
    issue_stream_token,
)
from transflow._wire.trace import TraceContext
from transflow.errors import ConfigError, UploadError, UploadRefusedError
from transflow.ingest.metadata import (
    MAX_METADATA_BYTES,
    META_FIELDS,
    META_FILE_COUNT,
    META_PERMISSIONS,
    META_TEMPLATE_ID,
    META_TRACEPARENT,
    META_TRACESTATE,
    META_UPLOAD_ID,
    META_USER_ID,
    encode_fields,
)
from transflow.ingest.parts import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    MAX_MULTIPART_OBJECT_BYTES,
    MAX_PART_BYTES,
    MIN_PART_BYTES,
    part_count,
    part_size_for,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "MAX_POST_OBJECT_BYTES",
    "PresignedFile",
    "UploadFile",
    "UploadTicket",
    "content_type_allowed",
    "create_upload",
    "new_upload_id",
    "pinned_key_problem",
]

log = logging.getLogger(__name__)

MAX_POST_OBJECT_BYTES = 5 * 1024**3
"""The largest object one POST may upload (5 GiB): the limit of a file sent by POST."""
MAX_EXPIRES_IN = 7 * 24 * 3600
"""SigV4 presigned requests live at most 7 days."""

_META_PREFIX = "x-amz-meta-"
# An upload id is a key segment and the SQS MessageGroupId: URL-safe characters only.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_MEDIA_NAME = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(rf"({_MEDIA_NAME})/({_MEDIA_NAME})(\s*;.*)?", re.ASCII)
_PATTERN = re.compile(rf"(\*|{_MEDIA_NAME})/(\*|{_MEDIA_NAME})", re.ASCII)
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


@attrs.frozen
class UploadFile:
    """A file the browser wants to upload: its name, and what it says about it."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    content_type: str | None = None
    size: int | None = None


@attrs.frozen
class PresignedFile:
    """Where and how to upload one file, by ``method``:

    - ``"post"``: POST ``fields`` (in order, then the file as the form's last part, named
      ``file``) to ``url``.
    - ``"multipart"``: S3's multipart upload ``multipart_upload_id`` of ``key`` is begun;
      the browser asks the host's sign-parts endpoint for the URLs of parts 1 to
      ``part_count`` (each ``part_size`` bytes but the last, ``size`` bytes in all), PUTs
      them, then asks its complete endpoint (:class:`transflow.MultipartEndpoint`).
      ``url`` and ``fields`` are empty.
    """

    name: str
    key: str
    content_type: str | None
    max_size: int
    # No default, so the wire always says which way the file goes.
    method: str
    url: str = ""
    fields: Mapping[str, str] = attrs.field(factory=dict)
    multipart_upload_id: str | None = None
    part_size: int | None = None
    part_count: int | None = None
    size: int | None = None


@attrs.frozen
class UploadTicket:
    """An upload, ready to go: its id, where its files go and how to send each one, and
    (when ``create_upload`` was given a stream secret) the token that lets the browser
    follow its progress: ``stream_token``, valid until ``stream_token_expires_at``."""

    upload_id: str
    bucket: str
    branch: str
    prefix: str
    template_id: str
    expires_at: dt.datetime
    files: tuple[PresignedFile, ...]
    stream_token: str | None = attrs.field(default=None, repr=False)
    stream_token_expires_at: dt.datetime | None = None

    @property
    def channel(self) -> str:
        """The upload's progress channel, ``upload:{branch}:{uploadId}``."""
        return upload_channel(self.branch, self.upload_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON a create-upload endpoint returns to the browser (camelCase)."""
        out: dict[str, Any] = converter.unstructure(self)
        return out


def new_upload_id() -> str:
    """A random, URL-safe upload id: 128 bits from :mod:`secrets`, 22 characters."""
    return secrets.token_urlsafe(16)


def content_type_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    """Whether a media type matches one of ``patterns`` (``image/png``, ``image/*``, ``*/*``).

    Matching is anchored and case-insensitive, and parameters (``; charset=…``) are ignored:
    ``image/*`` allows ``image/png`` but never ``evil/image/png`` or ``image/png/evil``.
    """
    match = _MEDIA_TYPE.fullmatch(content_type.strip())
    if match is None:
        return False
    kind, sub = match.group(1).lower(), match.group(2).lower()
    for pattern in patterns:
        parsed = _PATTERN.fullmatch(pattern.strip().lower())
        if parsed is None:
            continue
        want_kind, want_sub = parsed.groups()
        if want_kind in ("*", kind) and want_sub in ("*", sub):
            return True
    return False


def _check_patterns(patterns: Sequence[str]) -> None:
    if isinstance(patterns, str):
        raise UploadError(
            "allowed_content_types must be a list of media types, not one string "
            f"(write [{patterns!r}])"
        )
    bad = [p for p in patterns if not _PATTERN.fullmatch(p.strip().lower())]
    if bad:
        raise UploadError(
            f"allowed_content_types holds {bad!r}, which are not media type patterns; "
            "write them as 'type/subtype', 'type/*' or '*/*'"
        )


def _metadata(
    upload_id: str,
    template_id: str,
    fields: Mapping[str, JsonValue] | None,
    user: UserContext | None,
    file_count: int,
    *,
    trace: TraceContext | None = None,
) -> dict[str, str]:
    meta = {META_UPLOAD_ID: upload_id, META_TEMPLATE_ID: template_id}
    if fields:
        try:
            meta[META_FIELDS] = encode_fields(fields)
        except (TypeError, ValueError) as exc:
            raise UploadError(
                f"fields cannot be written as JSON ({exc}); pass strings, numbers, "
                "booleans, null, lists and objects only"
            ) from exc
    if user is not None:
        meta[META_USER_ID] = user.user_id
        if user.permissions:
            meta[META_PERMISSIONS] = json.dumps(list(user.permissions), separators=(",", ":"))
    meta[META_FILE_COUNT] = str(file_count)
    if trace is not None:
        meta[META_TRACEPARENT] = trace.traceparent
    # Counted with the x-amz-meta- prefix: the stricter reading of S3's rule, so a signed
    # upload is never refused by S3 after the browser has sent the file.
    size = sum(len(_META_PREFIX + k) + len(v.encode()) for k, v in meta.items())
    if trace is not None and trace.tracestate:
        state_size = len(_META_PREFIX + META_TRACESTATE) + len(trace.tracestate.encode())
        if size + state_size <= MAX_METADATA_BYTES:
            meta[META_TRACESTATE] = trace.tracestate
            size += state_size
        else:
            # Vendor hints only: the trace itself (traceparent) still travels.
            log.warning(
                "create_upload: tracestate (%d bytes) left out of upload %s: it would take "
                "the metadata over S3's %d-byte limit",
                state_size,
                upload_id,
                MAX_METADATA_BYTES,
            )
    if size > MAX_METADATA_BYTES:
        raise UploadError(
            f"the upload's metadata would be {size} bytes, over S3's {MAX_METADATA_BYTES}-byte "
            "limit on user metadata; keep fields small (ids and options, not content) and "
            "store anything larger in your own database under the upload id"
        )
    return meta


def _check_ids(upload_id: str, template_id: str, user: UserContext | None) -> None:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise UploadError(
            f"upload id {upload_id!r} cannot be used: it must be 1-128 letters, digits, "
            "'-', '_' or '.', not starting with '.' (omit it to get a random one)"
        )
    if not template_id or not _PRINTABLE_ASCII.fullmatch(template_id):
        raise UploadError(
            f"template id {template_id!r} must be non-empty printable ASCII "
            "(it travels in S3 metadata)"
        )
    if user is not None:
        if not _PRINTABLE_ASCII.fullmatch(user.user_id) or user.user_id != user.user_id.strip():
            raise UploadError(
                f"user id {user.user_id!r} must be printable ASCII without leading or "
                "trailing spaces (it travels in S3 metadata, which trims them); pass the id "
                "your identity provider issues "
                "(a UUID or 'sub')"
            )
        for permission in user.permissions:
            if not _PRINTABLE_ASCII.fullmatch(permission):
                raise UploadError(f"permission {permission!r} must be printable ASCII")


def _as_file(item: str | UploadFile) -> UploadFile:
    if isinstance(item, UploadFile):
        return item
    if isinstance(item, str):
        return UploadFile(item)
    raise UploadError(f"files must hold file names or UploadFile values, not {type(item).__name__}")


def _refusal(  # noqa: PLR0911 - one return per reason reads best
    file: UploadFile, max_size: int, allowed: Sequence[str] | None
) -> str | None:
    """Why one file is refused, or None."""
    if not file.name.strip():
        return "the file name is empty"
    if file.size is not None:
        if isinstance(file.size, bool) or not isinstance(file.size, int) or file.size < 0:
            return f"size {file.size!r} is not a byte count"
        if file.size > max_size:
            return f"{file.size} bytes is over the {max_size}-byte limit"
    if file.content_type is not None and not _MEDIA_TYPE.fullmatch(file.content_type.strip()):
        return f"content type {file.content_type!r} is not a media type (type/subtype)"
    if allowed is not None:
        if file.content_type is None:
            return (
                "no content type given, and this upload only accepts "
                f"{', '.join(allowed)}; send the file's type"
            )
        if not content_type_allowed(file.content_type, allowed):
            return f"content type {file.content_type!r} is not one of {', '.join(allowed)}"
    return None


def _unique_names(files: Sequence[UploadFile]) -> list[str]:
    """Safe names, distinct within the upload: a repeated name gets ``-2``, ``-3``, …"""
    seen: set[str] = set()
    names: list[str] = []
    for file in files:
        base = safe_filename(file.name)
        name, n = base, 1
        while name.lower() in seen:  # case-folded: S3 is not, but downloads to disks are
            n += 1
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}-{n}.{ext}" if dot and stem else f"{base}-{n}"
        seen.add(name.lower())
        names.append(name)
    return names


def pinned_key_problem(fields: Mapping[str, str], key: str) -> str | None:
    """Why the signed policy in a presigned POST's ``fields`` does not pin ``key`` exactly
    (a ``{"key": key}`` condition and no ``starts-with`` on the key), or None when it does.

    botocore signs ``["starts-with", "$key", prefix]`` when a key ends in ``${filename}``,
    which would let the browser write any key under the prefix."""
    encoded = fields.get("policy")
    if not isinstance(encoded, str):
        return "the presigned POST carries no policy"
    try:
        policy = json.loads(base64.b64decode(encoded, validate=True))
        conditions = policy["conditions"]
    except (ValueError, KeyError, TypeError):
        return "the presigned POST's policy is not base64 of a JSON policy"
    exact = False
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, dict) and "key" in condition:
            exact = exact or condition["key"] == key
            if condition["key"] != key:
                return f"the policy names another key ({str(condition['key'])[:80]!r})"
        elif isinstance(condition, list) and len(condition) == 3 and str(condition[1]) == "$key":
            return f"the policy lets the key vary ({condition[0]!r} $key)"
    return None if exact else "the policy does not pin the key"


def create_upload(
    s3_client: S3Client,
    *,
    bucket: str,
    branch: str,
    template_id: str,
    files: Sequence[str | UploadFile],
    user: UserContext | None = None,
    fields: Mapping[str, JsonValue] | None = None,
    upload_id: str | None = None,
    expires_in: int = 3600,
    max_file_size: int | None = None,
    allowed_content_types: Sequence[str] | None = None,
    stream_secret: StreamSecret | None = None,
    stream_token_ttl: int | None = None,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    trace: TraceContext | str | None = None,
) -> UploadTicket:
    """Sign one presigned POST per file of a new upload (or begin a multipart upload for
    each big one) and return the ticket.

    Create ``s3_client`` with ``Config(signature_version="s3v4")``: botocore otherwise signs
    POST policies with SigV2, which newer regions refuse.

    ``user`` is a :class:`transflow.UserContext` (or None for anonymous uploads);
    ``fields`` are the template's options, carried to the job. Every refused file is
    reported at once in an :class:`~transflow.UploadRefusedError`; arguments that cannot
    work raise :class:`~transflow.UploadError`.

    A file whose declared ``size`` is over ``multipart_threshold`` bytes (100 MiB unless
    told) is uploaded in parts of ``part_size`` bytes (8 MiB unless told; raised for files
    that would need over 10,000 parts), and its ticket entry says
    ``method="multipart"``. For each such file this calls S3's CreateMultipartUpload with
    the key, content type and metadata a POST would pin: the only S3 requests
    create_upload makes (POST signing is local). A file without a declared size always
    goes by POST, so at most 5 GiB; ``max_file_size`` may be up to 5 TiB for multipart
    files. The host serves the part endpoints with :class:`transflow.MultipartEndpoint`.

    With ``stream_secret`` (``TransflowConfig.stream_secret``, from
    ``TRANSFLOW_STREAM_SECRET``), the ticket carries ``stream_token``: the SSE endpoints let
    its bearer follow this upload's channel, and nothing else, for ``stream_token_ttl``
    seconds (by default the life of the upload form plus an hour, so the browser can
    reconnect until the job is done).

    ``trace`` starts the upload's trace (docs/operations.md): a :class:`~transflow.TraceContext`
    or a W3C ``traceparent`` string, e.g. the host's current request's
    (``TraceContext.from_headers(request.headers)``); a malformed one raises
    :class:`~transflow.TraceContextError`. Without it, the current OpenTelemetry span is
    continued when the host uses OpenTelemetry, else a new trace is started. The bridge,
    the job, its steps and every progress event carry it on.
    """
    limit = _check_arguments(files, expires_in, max_file_size, allowed_content_types)
    _check_multipart_arguments(multipart_threshold, part_size)
    trace = _upload_trace(trace)
    upload_id = new_upload_id() if upload_id is None else upload_id
    _check_ids(upload_id, template_id, user)
    _warn_unless_sigv4(s3_client)
    plan = _plan(
        [_as_file(item) for item in files],
        branch=branch,
        upload_id=upload_id,
        template_id=template_id,
        user=user,
        fields=fields,
        limit=limit,
        allowed=allowed_content_types,
        multipart_threshold=multipart_threshold,
        trace=trace,
    )
    signed = _sign(s3_client, bucket, plan, expires_in, part_size)
    now = dt.datetime.now(dt.timezone.utc)
    token, token_expires = None, None
    if stream_secret is not None:
        token, token_expires = _stream_token(
            stream_secret, plan, user, ttl=stream_token_ttl, expires_in=expires_in, now=now
        )
    return UploadTicket(
        upload_id=upload_id,
        bucket=bucket,
        branch=plan.branch,
        prefix=plan.prefix,
        template_id=template_id,
        expires_at=now + dt.timedelta(seconds=expires_in),
        files=signed,
        stream_token=token,
        stream_token_expires_at=token_expires,
    )


def _check_arguments(
    files: Sequence[str | UploadFile],
    expires_in: int,
    max_file_size: int | None,
    allowed_content_types: Sequence[str] | None,
) -> int:
    """Refuse arguments that cannot work; the per-file size limit."""
    if not files:
        raise UploadError("an upload needs at least one file")
    if isinstance(files, str):
        raise UploadError(f"files must be a list of file names (write [{files!r}])")
    if isinstance(expires_in, bool) or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise UploadError(f"expires_in must be 1 to {MAX_EXPIRES_IN} seconds, not {expires_in!r}")
    limit = MAX_MULTIPART_OBJECT_BYTES if max_file_size is None else max_file_size
    if isinstance(limit, bool) or not 0 <= limit <= MAX_MULTIPART_OBJECT_BYTES:
        raise UploadError(
            f"max_file_size must be 0 to {MAX_MULTIPART_OBJECT_BYTES} bytes (S3's object "
            f"limit; files sent by POST stop at 5 GiB), not {max_file_size!r}"
        )
    if allowed_content_types is not None:
        _check_patterns(allowed_content_types)
    return limit


def _check_multipart_arguments(threshold: int, part_size: int) -> None:
    if isinstance(threshold, bool) or not 0 <= threshold <= MAX_POST_OBJECT_BYTES:
        raise UploadError(
            f"multipart_threshold must be 0 to {MAX_POST_OBJECT_BYTES} bytes (files over it "
            f"go in parts; a POST carries at most 5 GiB), not {threshold!r}"
        )
    if isinstance(part_size, bool) or not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
        raise UploadError(
            f"part_size must be {MIN_PART_BYTES} to {MAX_PART_BYTES} bytes (S3's part "
            f"limits), not {part_size!r}"
        )


def _upload_trace(trace: TraceContext | str | None) -> TraceContext:
    if isinstance(trace, TraceContext):
        return trace
    if trace is not None:
        return TraceContext(trace)  # raises TraceContextError, saying what is wrong
    return current_trace() or TraceContext.new()


def _warn_unless_sigv4(s3_client: S3Client) -> None:
    if getattr(s3_client.meta.config, "signature_version", None) != "s3v4":
        # botocore signs presigned POSTs with the deprecated SigV2 unless told otherwise;
        # regions opened since 2014 refuse those.
        log.warning(
            "create_upload: the S3 client does not sign with SigV4; create it with "
            "botocore.config.Config(signature_version='s3v4')"
        )


@attrs.frozen
class _PlannedPost:
    """One file's presigned POST before signing: its key, form fields and policy
    conditions."""

    file: UploadFile
    key: str
    form: dict[str, str]
    conditions: list[Any]
    multipart: bool
    metadata: dict[str, str]


@attrs.frozen
class _Plan:
    """An upload's keys and what each POST will pin, decided without S3."""

    upload_id: str
    branch: str
    prefix: str
    limit: int
    posts: tuple[_PlannedPost, ...]

    @property
    def post_limit(self) -> int:
        """The size limit a POST policy pins: S3 takes at most 5 GiB in one POST."""
        return min(self.limit, MAX_POST_OBJECT_BYTES)


def _plan(
    wanted: list[UploadFile],
    *,
    branch: str,
    upload_id: str,
    template_id: str,
    user: UserContext | None,
    fields: Mapping[str, JsonValue] | None,
    limit: int,
    allowed: Sequence[str] | None,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    trace: TraceContext | None = None,
) -> _Plan:
    """The keys and signed fields of each file; every refused file at once, in an
    :class:`UploadRefusedError`. Pure."""
    problems = [
        (file.name, reason)
        for file in wanted
        if (reason := _refusal(file, limit, allowed)) is not None
    ]
    if problems:
        raise UploadRefusedError(problems)
    try:
        branch = sanitize_branch(branch)
    except ConfigError as exc:
        raise UploadError(str(exc)) from None
    prefix = upload_prefix(branch, upload_id, user.user_id if user else None)
    meta = _metadata(upload_id, template_id, fields, user, len(wanted), trace=trace)
    posts: list[_PlannedPost] = []
    for file, name in zip(wanted, _unique_names(wanted), strict=True):
        form = {f"{_META_PREFIX}{k}": v for k, v in meta.items()}
        # Every form field is pinned by an exact-match condition: S3 refuses a POST whose
        # field differs from the signed one, or that adds an x-amz-meta-* field of its own.
        conditions: list[Any] = [{name_: value} for name_, value in form.items()]
        if file.content_type is not None:
            form["Content-Type"] = file.content_type.strip()
            conditions.append({"Content-Type": form["Content-Type"]})
        conditions.append(["content-length-range", 0, min(limit, MAX_POST_OBJECT_BYTES)])
        multipart = file.size is not None and file.size > multipart_threshold
        posts.append(_PlannedPost(file, prefix + name, form, conditions, multipart, meta))
    return _Plan(upload_id, branch, prefix, limit, tuple(posts))


def _sign(
    s3_client: S3Client, bucket: str, plan: _Plan, expires_in: int, part_size: int
) -> tuple[PresignedFile, ...]:
    """One presigned POST per small file (local: botocore signs without calling S3), then
    one multipart upload begun per big one; those are aborted again if any fails."""
    signed: dict[int, PresignedFile] = {}
    for index, post in enumerate(plan.posts):
        if not post.multipart:
            signed[index] = _sign_post(s3_client, bucket, plan, post, expires_in)
    begun: list[PresignedFile] = []
    try:
        for index, post in enumerate(plan.posts):
            if post.multipart:
                started = _begin_multipart(s3_client, bucket, plan, post, part_size)
                begun.append(started)
                signed[index] = started
    except UploadError:
        _abort_begun(s3_client, bucket, begun)
        raise
    return tuple(signed[index] for index in range(len(plan.posts)))


def _sign_post(
    s3_client: S3Client, bucket: str, plan: _Plan, post: _PlannedPost, expires_in: int
) -> PresignedFile:
    answer = s3_client.generate_presigned_post(
        Bucket=bucket,
        Key=post.key,
        Fields=post.form,
        Conditions=post.conditions,
        ExpiresIn=expires_in,
    )
    # safe_filename keeps ${filename} out of keys; checked again here so that no policy
    # that lets the browser pick its key is ever handed out, whatever signed it.
    unpinned = pinned_key_problem(answer["fields"], post.key)
    if unpinned is not None:
        raise UploadError(f"refusing to sign a POST for {post.key!r}: {unpinned}")
    return PresignedFile(
        name=post.file.name,
        key=post.key,
        url=answer["url"],
        fields=dict(answer["fields"]),
        content_type=post.form.get("Content-Type"),
        max_size=plan.post_limit,
        method="post",
    )


def _begin_multipart(
    s3_client: S3Client, bucket: str, plan: _Plan, post: _PlannedPost, preferred: int
) -> PresignedFile:
    """CreateMultipartUpload with what a POST policy would pin: the exact key, the content
    type and the metadata (S3 keeps them for the object completion makes)."""
    size = post.file.size
    assert size is not None  # only declared sizes go in parts
    content_type = post.form.get("Content-Type")
    extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
    try:
        answer = s3_client.create_multipart_upload(
            Bucket=bucket, Key=post.key, Metadata=post.metadata, **extra
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise UploadError(
            f"S3 would not begin the multipart upload of {post.key!r} ({exc}); nothing of "
            "this upload was kept: ask for the upload again, and check the role's "
            "s3:PutObject permission on the upload prefix if it persists"
        ) from exc
    part = part_size_for(size, preferred)
    return PresignedFile(
        name=post.file.name,
        key=post.key,
        multipart_upload_id=answer["UploadId"],
        part_size=part,
        part_count=part_count(size, part),
        size=size,
        content_type=content_type,
        max_size=plan.limit,
        method="multipart",
    )


def _abort_begun(s3_client: S3Client, bucket: str, begun: Sequence[PresignedFile]) -> None:
    for file in begun:
        try:
            s3_client.abort_multipart_upload(
                Bucket=bucket, Key=file.key, UploadId=file.multipart_upload_id or ""
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            # The bucket's lifecycle rule aborts it in the end; said so the operator knows.
            log.warning(
                "create_upload: could not abort multipart upload %s of %s after a failure "
                "(%s); the bucket's abort-incomplete-multipart lifecycle rule will remove it",
                file.multipart_upload_id,
                file.key,
                exc,
            )


def _stream_token(
    secret: StreamSecret,
    plan: _Plan,
    user: UserContext | None,
    *,
    ttl: int | None,
    expires_in: int,
    now: dt.datetime,
) -> tuple[str, dt.datetime]:
    """The token that lets the browser follow this upload's channel, and its expiry."""
    if ttl is None:
        ttl = min(expires_in + DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL)
    token = issue_stream_token(
        secret,
        upload_channel(plan.branch, plan.upload_id),
        user_id=user.user_id if user else None,
        ttl=ttl,
        now=now.timestamp(),
    )
    return token, now + dt.timedelta(seconds=ttl)
