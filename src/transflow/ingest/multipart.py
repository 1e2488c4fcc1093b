"""The server half of multipart uploads: sign-parts, list-parts, complete and abort.

:func:`transflow.create_upload` begins a multipart upload for each big file; the browser
then calls four JSON endpoints of the host, which hand the request body to
:meth:`MultipartEndpoint.handle` (or one of its four methods) and return its answer::

    POST {base}/sign-parts  {"uploadId","key","multipartUploadId","partNumbers":[1,2]}
         -> {"parts":[{"partNumber":1,"url":"..."}],"expiresAt":"ISO-8601"}
    POST {base}/list-parts  {"uploadId","key","multipartUploadId"}
         -> {"parts":[{"partNumber":1,"size":5242880,"etag":"\\"...\\""}]}
    POST {base}/complete    {"uploadId","key","multipartUploadId","parts":[{"partNumber","etag"}]}
         -> {"key","size","etag"}
    POST {base}/abort       {"uploadId","key","multipartUploadId"} -> {"aborted":true}

Errors answer ``{"error": "<ErrorClassName>", "message": "..."}`` with 400 (bad input), 401
(no valid token), 403 (not this upload), 404 (no such multipart upload) or 409 (complete
after abort). Access is the streams': the ticket's stream token (``Authorization: Bearer``)
for ``upload:{branch}:{uploadId}``, or the host's ``authorize(request, channel)`` hook. The
key must be a file of that upload's folder. Part URLs are signed on demand, at most
``max_urls`` per request, each valid ``url_expires_in`` seconds: a browser asks for the next
few as it goes, so none expires while it waits its turn.

The server keeps no record of a file's declared size: part numbers are checked against the
most parts any file within ``max_file_size`` can have, and completion checks (with
ListParts) that the parts add up to at most ``max_file_size`` and that every part but the
last is at least 5 MiB, aborting the upload otherwise; after completion a HeadObject checks
the size S3 stored. No web framework: JSON in, JSON-able out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import botocore.exceptions

from transflow._aws.errors import client_error_code
from transflow._aws.s3 import is_not_found
from transflow._wire.channels import upload_channel
from transflow._wire.keys import is_user_folder, user_folder
from transflow._wire.tokens import StreamSecret, check_stream_secret, verify_stream_token
from transflow.errors import (
    MultipartDeniedError,
    MultipartError,
    MultipartRefusedError,
    MultipartUploadGoneError,
    MultipartUploadNotFoundError,
    StreamTokenError,
)
from transflow.ingest.grouping import key_branch_problem
from transflow.ingest.parts import (
    DEFAULT_PART_SIZE,
    MAX_MULTIPART_OBJECT_BYTES,
    MIN_PART_BYTES,
    max_part_count,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "MULTIPART_ACTIONS",
    "MultipartAuthorize",
    "MultipartEndpoint",
    "MultipartReply",
    "MultipartStats",
]

log = logging.getLogger(__name__)

MULTIPART_ACTIONS = ("sign-parts", "list-parts", "complete", "abort")
"""The four endpoints, by the last segment of their path."""

MultipartAuthorize = Callable[[Any, str], bool]
"""``authorize(request, channel) -> bool``, as for the streams: may this request act on the
upload whose channel is ``upload:{branch}:{uploadId}``?"""

_MAX_BODY_BYTES = 1_000_000
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_UPLOADS = "uploads/"


@attrs.frozen
class MultipartReply:
    """What an endpoint answers: an HTTP ``status`` and a JSON-able ``body``."""

    status: int
    body: Mapping[str, Any]

    def json(self) -> bytes:
        """The body as UTF-8 JSON."""
        return json.dumps(self.body, separators=(",", ":")).encode()


@attrs.frozen
class _Target:
    """A checked request's upload, key and multipart upload id."""

    upload_id: str
    key: str
    multipart_upload_id: str


@attrs.frozen
class MultipartStats:
    """What an endpoint refused or ended since it was made: ``refused`` completions
    (aborted because the parts broke the rules), ``aborted`` uploads (asked by the
    browser), ``denied`` requests (401/403) and ``bad_requests`` (other 4xx)."""

    refused: int
    aborted: int
    denied: int
    bad_requests: int


@attrs.define
class _Counts:
    refused: int = 0
    aborted: int = 0
    denied: int = 0
    bad_requests: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


@attrs.frozen
class MultipartEndpoint:
    """The four multipart endpoints for one upload bucket.

    Give it the S3 client that signs (its role needs s3:PutObject, s3:AbortMultipartUpload
    and s3:ListMultipartUploadParts on ``uploads/*``), the bucket, and ``secret`` (the
    stream secret create_upload signs tokens with) and/or ``authorize``. ``max_file_size``
    and ``part_size`` must be those create_upload is called with."""

    s3_client: S3Client
    bucket: str
    secret: StreamSecret | None = attrs.field(default=None, repr=False)
    authorize: MultipartAuthorize | None = None
    max_file_size: int = MAX_MULTIPART_OBJECT_BYTES
    part_size: int = DEFAULT_PART_SIZE
    url_expires_in: int = 900
    max_urls: int = 10
    _counts: _Counts = attrs.field(factory=_Counts, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.secret is not None:
            check_stream_secret(self.secret)
        elif self.authorize is None:
            raise MultipartError(
                "MultipartEndpoint needs secret= (the stream secret create_upload signs "
                "tokens with) or authorize= (your own check): it never serves anyone"
            )
        if not 1 <= self.max_urls <= 100:
            raise MultipartError(f"max_urls must be 1 to 100, not {self.max_urls!r}")
        if not 60 <= self.url_expires_in <= 7 * 24 * 3600:
            raise MultipartError(
                f"url_expires_in must be 60 seconds to 7 days, not {self.url_expires_in!r}"
            )

    @property
    def refused(self) -> int:
        """Completions refused (and aborted) because the parts broke the rules."""
        return self._counts.refused

    def stats(self) -> MultipartStats:
        """The counts of refusals and aborts so far (for the host's metrics)."""
        c = self._counts
        with c.lock:
            return MultipartStats(c.refused, c.aborted, c.denied, c.bad_requests)

    # -- the framework-agnostic entry ----------------------------------------------------

    def handle(
        self,
        action: str,
        body: bytes | str | Mapping[str, Any],
        *,
        authorization: str | None = None,
        request: Any = None,
    ) -> MultipartReply:
        """Serve one request: ``action`` is one of :data:`MULTIPART_ACTIONS`, ``body`` the
        request's JSON, ``authorization`` its ``Authorization`` header, ``request`` what the
        ``authorize`` hook is given. Every refusal is a 4xx reply; S3 failures that are not
        about the request raise."""
        handlers: dict[str, Callable[..., Mapping[str, Any]]] = {
            "sign-parts": self.sign_parts,
            "list-parts": self.list_parts,
            "complete": self.complete,
            "abort": self.abort,
        }
        try:
            handler = handlers.get(action)
            if handler is None:
                unknown = MultipartError(
                    f"no multipart action {action!r}; use one of {', '.join(MULTIPART_ACTIONS)}"
                )
                unknown.http_status = 404
                raise unknown
            data = _parse(body)
            return MultipartReply(200, handler(data, authorization=authorization, request=request))
        except MultipartError as exc:
            denied = isinstance(exc, MultipartDeniedError)
            self._counts.add("denied" if denied else "bad_requests")
            # INFO, not WARNING: a browser with an expired token is routine; the counts in
            # stats() are what an operator watches.
            log.info("multipart %s refused (%d): %s", action[:40], exc.http_status, exc)
            return MultipartReply(
                exc.http_status, {"error": type(exc).__name__, "message": str(exc)}
            )

    # -- the four actions ----------------------------------------------------------------

    def sign_parts(
        self, body: Mapping[str, Any], *, authorization: str | None = None, request: Any = None
    ) -> dict[str, Any]:
        """Presigned PUT URLs for the parts asked for (local signing, no S3 request)."""
        target = self._target(body, authorization, request)
        numbers = body.get("partNumbers")
        if not isinstance(numbers, list) or not numbers:
            raise MultipartError("partNumbers must be a non-empty list of part numbers")
        if len(numbers) > self.max_urls:
            raise MultipartError(
                f"{len(numbers)} part numbers asked for; ask for at most {self.max_urls} at a "
                "time, and for more as those finish"
            )
        for number in numbers:
            self._check_part_number(number)
        now = dt.datetime.now(dt.timezone.utc)
        parts = [
            {
                "partNumber": number,
                "url": self.s3_client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": target.key,
                        "UploadId": target.multipart_upload_id,
                        "PartNumber": number,
                    },
                    ExpiresIn=self.url_expires_in,
                    HttpMethod="PUT",
                ),
            }
            for number in dict.fromkeys(numbers)
        ]
        expires = now + dt.timedelta(seconds=self.url_expires_in)
        return {"parts": parts, "expiresAt": expires.isoformat().replace("+00:00", "Z")}

    def list_parts(
        self, body: Mapping[str, Any], *, authorization: str | None = None, request: Any = None
    ) -> dict[str, Any]:
        """The parts S3 already holds (every page): what a resumed upload need not send."""
        target = self._target(body, authorization, request)
        return {
            "parts": [
                {"partNumber": number, "size": size, "etag": etag}
                for number, size, etag in self._parts(target)
            ]
        }

    def complete(
        self, body: Mapping[str, Any], *, authorization: str | None = None, request: Any = None
    ) -> dict[str, Any]:
        """Check the parts against S3's list and the limits, then complete the upload."""
        target = self._target(body, authorization, request)
        wanted = _wanted_parts(body.get("parts"))
        for number in wanted:
            self._check_part_number(number)
        try:
            held = {number: (size, etag) for number, size, etag in self._parts(target)}
        except MultipartUploadNotFoundError:
            return self._already_completed(target)
        problem = _parts_problem(wanted, held, self.max_file_size)
        if problem is not None:
            self._refuse(target, problem)
        try:
            answer = self.s3_client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=target.key,
                UploadId=target.multipart_upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": held[n][1]} for n in sorted(wanted)]
                },
            )
        except botocore.exceptions.ClientError as exc:
            if client_error_code(exc) == "NoSuchUpload":
                return self._already_completed(target)
            if client_error_code(exc) in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                self._refuse(target, f"S3 refused the parts ({client_error_code(exc)})")
            raise
        head = self.s3_client.head_object(Bucket=self.bucket, Key=target.key)
        size = int(head["ContentLength"])
        if size > self.max_file_size:
            # S3 cannot limit a multipart object's size: the parts were checked, this
            # catches parts replaced between the check and the completion.
            self.s3_client.delete_object(Bucket=self.bucket, Key=target.key)
            self._counts.add("refused")
            log.warning(
                "multipart: deleted %s after completion: %d bytes is over the %d-byte limit",
                target.key,
                size,
                self.max_file_size,
            )
            raise MultipartRefusedError(
                f"the completed file is {size} bytes, over the {self.max_file_size}-byte "
                "limit, and was deleted; upload a smaller file"
            )
        return {"key": target.key, "size": size, "etag": answer.get("ETag", head.get("ETag"))}

    def abort(
        self, body: Mapping[str, Any], *, authorization: str | None = None, request: Any = None
    ) -> dict[str, Any]:
        """Abort the multipart upload: S3 drops the parts it holds."""
        target = self._target(body, authorization, request)
        try:
            self.s3_client.abort_multipart_upload(
                Bucket=self.bucket, Key=target.key, UploadId=target.multipart_upload_id
            )
        except botocore.exceptions.ClientError as exc:
            if client_error_code(exc) == "NoSuchUpload":
                raise _not_found(target) from None
            raise
        self._counts.add("aborted")
        return {"aborted": True}

    # -- checks --------------------------------------------------------------------------

    def _target(self, body: Mapping[str, Any], authorization: str | None, request: Any) -> _Target:
        if not isinstance(body, Mapping):
            raise MultipartError("the request body must be a JSON object")
        upload_id, key, multipart_id = (
            body.get("uploadId"),
            body.get("key"),
            body.get("multipartUploadId"),
        )
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise MultipartError("uploadId must be the ticket's uploadId")
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise MultipartError("key must be the ticket's key for this file")
        if not isinstance(multipart_id, str) or not multipart_id or len(multipart_id) > 1024:
            raise MultipartError("multipartUploadId must be the ticket's multipartUploadId")
        branch, folder = _key_owner(key, upload_id)
        channel = upload_channel(branch, upload_id)
        self._authorize(channel, folder, authorization, request)
        return _Target(upload_id, key, multipart_id)

    def _authorize(
        self, channel: str, folder: str | None, authorization: str | None, request: Any
    ) -> None:
        token = _bearer(authorization)
        if token is not None and self.secret is not None and token.startswith("tf1."):
            try:
                grant = verify_stream_token(self.secret, token)
            except StreamTokenError as exc:
                raise MultipartDeniedError(str(exc), status=401) from None
            if not grant.allows(channel):
                raise MultipartDeniedError(f"this token is for {grant.channel}, not {channel}")
            if not grant.is_operator:
                mine = None if grant.user_id is None else user_folder(grant.user_id)
                if mine != folder:
                    raise MultipartDeniedError("this key is not in the token's upload folder")
            return
        if self.authorize is not None:
            if not self.authorize(request, channel):
                raise MultipartDeniedError(f"not allowed to act on {channel}")
            return
        raise MultipartDeniedError(
            "send the upload ticket's streamToken as Authorization: Bearer <token>", status=401
        )

    def _check_part_number(self, number: object) -> None:
        most = max_part_count(self.max_file_size, self.part_size)
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= most:
            raise MultipartError(
                f"part number {number!r} is not 1 to {most}: use the ticket's part numbers "
                "(1 to partCount)"
            )

    def _parts(self, target: _Target) -> Iterator[tuple[int, int, str]]:
        marker = 0
        while True:
            try:
                page = self.s3_client.list_parts(
                    Bucket=self.bucket,
                    Key=target.key,
                    UploadId=target.multipart_upload_id,
                    PartNumberMarker=marker,
                )
            except botocore.exceptions.ClientError as exc:
                if client_error_code(exc) == "NoSuchUpload":
                    raise _not_found(target) from None
                raise
            for part in page.get("Parts", []):
                yield int(part["PartNumber"]), int(part["Size"]), str(part["ETag"])
            if not page.get("IsTruncated"):
                return
            marker = int(page["NextPartNumberMarker"])

    def _refuse(self, target: _Target, problem: str) -> None:
        try:
            self.s3_client.abort_multipart_upload(
                Bucket=self.bucket, Key=target.key, UploadId=target.multipart_upload_id
            )
        except botocore.exceptions.ClientError as exc:
            log.warning("multipart: could not abort refused %s: %s", target.key, exc)
        self._counts.add("refused")
        log.warning("multipart: refused and aborted %s: %s", target.key, problem)
        raise MultipartRefusedError(
            f"{problem}; the multipart upload was aborted: upload the file again"
        )

    def _already_completed(self, target: _Target) -> dict[str, Any]:
        """No such upload at completion: a retried complete whose first answer was lost
        finds the object (answered as before); otherwise the upload was aborted."""
        try:
            head = self.s3_client.head_object(Bucket=self.bucket, Key=target.key)
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                raise MultipartUploadGoneError(
                    f"multipart upload {target.multipart_upload_id[:80]!r} of {target.key!r} "
                    "no longer exists (aborted or expired): upload the file again"
                ) from None
            raise
        return {"key": target.key, "size": int(head["ContentLength"]), "etag": head.get("ETag")}


def _parse(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    if len(body) > _MAX_BODY_BYTES:
        raise MultipartError(f"the request body is over {_MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise MultipartError(f"the request body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MultipartError("the request body must be a JSON object")
    return data


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _key_owner(key: str, upload_id: str) -> tuple[str, str | None]:
    """The branch and user folder of a key in ``uploads/{branch}/[users/{folder}/]{uploadId}/``
    naming one file directly in that folder; refused otherwise."""
    refusal = MultipartDeniedError(
        f"key {key[:200]!r} is not a file of upload {upload_id!r}: use the ticket's key"
    )
    if not key.startswith(_UPLOADS) or key_branch_problem(key) is not None:
        raise refusal
    parts = key[len(_UPLOADS) :].split("/")
    if len(parts) == 3 and parts[1] == upload_id:
        branch, folder = parts[0], None
    elif len(parts) == 5 and parts[1] == "users" and parts[3] == upload_id:
        branch, folder = parts[0], parts[2]
        if not is_user_folder(folder):
            raise refusal
    else:
        raise refusal
    name = parts[-1]
    if name in ("", ".", "..") or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise refusal
    return branch, folder


def _wanted_parts(value: object) -> dict[int, str]:
    if not isinstance(value, list) or not value:
        raise MultipartError("parts must be a non-empty list of {partNumber, etag}")
    wanted: dict[int, str] = {}
    for item in value:
        if not isinstance(item, dict):
            raise MultipartError("each part must be {partNumber, etag}")
        number, etag = item.get("partNumber"), item.get("etag")
        if isinstance(number, bool) or not isinstance(number, int) or not isinstance(etag, str):
            raise MultipartError("each part must be {partNumber: integer, etag: string}")
        if number in wanted:
            raise MultipartError(f"part {number} is listed twice")
        wanted[number] = etag
    return wanted


def _parts_problem(
    wanted: Mapping[int, str], held: Mapping[int, tuple[int, str]], limit: int
) -> str | None:
    """Why these parts must not be completed, or None."""
    numbers = sorted(wanted)
    if numbers != list(range(1, len(numbers) + 1)):
        return "the parts are not numbered 1 to N without gaps"
    missing = [n for n in numbers if n not in held]
    if missing:
        return f"S3 holds no part {missing[0]} (list the parts and send the missing ones)"
    changed = [n for n in numbers if held[n][1].strip('"') != wanted[n].strip('"')]
    if changed:
        return f"part {changed[0]}'s ETag is not the one S3 holds"
    total = sum(held[n][0] for n in numbers)
    if total > limit:
        return f"the parts add up to {total} bytes, over the {limit}-byte limit"
    small = [n for n in numbers[:-1] if held[n][0] < MIN_PART_BYTES]
    if small:
        return (
            f"part {small[0]} is {held[small[0]][0]} bytes; every part but the last must "
            f"be at least {MIN_PART_BYTES} bytes"
        )
    return None


def _not_found(target: _Target) -> MultipartUploadNotFoundError:
    return MultipartUploadNotFoundError(
        f"S3 has no multipart upload {target.multipart_upload_id[:80]!r} for {target.key!r} "
        "(completed, aborted or expired): ask for a new upload"
    )
