"""Cancelling an upload on a browser's request, with the access rules of its stream.

The host mounts :func:`cancel_request` behind a POST route of its own (see
``examples/cancel_endpoint.py``): the browser sends the upload's ``streamToken`` (which
``create_upload`` issued for that upload's channel) or whatever the host's own ``authorize``
hook accepts, exactly as for the SSE apps (:mod:`transflow.streaming.apps`). A request that
cannot be allowed is refused with :class:`~transflow.errors.CancelRefusedError` carrying
the HTTP status; nothing it sends raises anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transflow._wire.channels import upload_channel
from transflow._wire.tokens import StreamSecret, verify_stream_token
from transflow.errors import (
    CancelRefusedError,
    ChannelError,
    ConfigError,
    StreamTokenError,
)
from transflow.processing.cancellation import CancelResult, cancel_upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["cancel_request"]


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise CancelRefusedError(400, f"{name} is missing: send the upload's {name}")
    return value


def cancel_request(
    s3_client: S3Client,
    *,
    bucket: str,
    branch: object,
    upload_id: object,
    token: object = None,
    secret: StreamSecret | None = None,
    authorize: Callable[[Any, str], bool] | None = None,
    request: Any = None,
    user_id: str | None = None,
    delete_outputs: bool = False,
) -> CancelResult:
    """Cancel upload ``upload_id`` of ``branch`` for a browser's request
    (:func:`~transflow.processing.cancellation.cancel_upload` once it is allowed).

    Allowed with a stream token (verified with ``secret``) for this upload's channel, whose
    user is the upload's, or an operator token for the branch (then ``user_id`` names the
    upload's user); or, with no token of ours, when ``authorize(request, channel)`` says
    yes (then ``user_id`` is the upload's user as the host knows it). Raises
    :class:`~transflow.errors.CancelRefusedError` (400, 401 or 403) otherwise; a job that
    completed first is no refusal: the result says :attr:`~.CancelResult.too_late` (answer
    409). AWS errors propagate."""
    if secret is None and authorize is None:
        raise ConfigError("cancel_request needs secret= (stream tokens) or authorize=")
    branch_text = _text("branch", branch)
    upload_text = _text("uploadId", upload_id)
    try:
        channel = upload_channel(branch_text, upload_text)
    except ChannelError as exc:  # pragma: no cover - upload_channel only formats
        raise CancelRefusedError(400, str(exc)) from exc
    owner = user_id
    if token is not None and secret is not None:
        try:
            grant = verify_stream_token(secret, token)
        except StreamTokenError as exc:
            raise CancelRefusedError(401, str(exc)) from exc
        if not grant.allows(channel):
            raise CancelRefusedError(
                403, f"this stream token is for {grant.channel}, not {channel[:200]}"
            )
        if not grant.is_operator:
            owner = grant.user_id  # the upload's own token names its user
    elif authorize is not None:
        if not authorize(request, channel):
            raise CancelRefusedError(403, f"not allowed to cancel {channel[:200]}")
    else:
        raise CancelRefusedError(
            401, "cancelling needs the upload's streamToken as ?token= or a Bearer header"
        )
    try:
        return cancel_upload(
            s3_client,
            bucket=bucket,
            branch=branch_text,
            upload_id=upload_text,
            user_id=owner,
            delete_outputs=delete_outputs,
        )
    except ConfigError as exc:
        raise CancelRefusedError(400, str(exc)) from exc
