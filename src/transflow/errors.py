"""Every error transflow raises, in one place.

Each one says what was wrong and what to do about it. Catch :class:`TransflowError` to catch
them all. This module imports nothing from the rest of the package, so any module may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BatchFailedError",
    "BridgeError",
    "CancelRefusedError",
    "ChannelError",
    "ConfigError",
    "ConfirmationRequiredError",
    "DuplicateTemplateError",
    "EmptyTemplateError",
    "EventFormatError",
    "HubForkedError",
    "HubLeaseHeldError",
    "InstanceQueueLostError",
    "JobCancelledError",
    "JobConfinementError",
    "JobFailedError",
    "JobFormatError",
    "LeaseLostError",
    "MultipartDeniedError",
    "MultipartError",
    "MultipartRefusedError",
    "MultipartUploadGoneError",
    "MultipartUploadNotFoundError",
    "OutputPathError",
    "ProgressEventTooLargeError",
    "ProvisionError",
    "ProvisionWarning",
    "QueueNotFoundError",
    "SseEncodingError",
    "StepUsageError",
    "StreamTokenError",
    "StreamTokenExpiredError",
    "StreamTokenForgedError",
    "StreamTokenMalformedError",
    "SubscriberLaggedError",
    "SubscriptionClosedError",
    "SubscriptionDeniedError",
    "TemplateDefinitionError",
    "TemplateNotFoundError",
    "ToolError",
    "ToolFailedError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "TraceContextError",
    "TransflowError",
    "UnknownConfigKeyWarning",
    "UploadCanceledError",
    "UploadError",
    "UploadMetadataError",
    "UploadRefusedError",
    "WebAssetNotFoundError",
    "WebhookDestinationError",
    "WebhookSignatureError",
]


class TransflowError(Exception):
    """Base class of every error raised by transflow."""


class ConfigError(TransflowError):
    """The configuration (file or environment) is missing, malformed or out of range."""


class JobFormatError(TransflowError, ValueError):
    """A message body is not a valid transflow wire object.

    ``problems`` lists every problem found, each prefixed with its path
    (``objects[0].key: required``), so one round trip fixes them all. It is also a
    :class:`ValueError`, so code that validates input generically still catches it.
    """

    def __init__(self, what: str, problems: Iterable[str]) -> None:
        self.what = what
        self.problems: tuple[str, ...] = tuple(problems)
        listed = "; ".join(self.problems) if self.problems else "no details"
        super().__init__(
            f"invalid {what}: {listed}. Fix the sender so that it writes the transflow wire "
            "format (see docs/wire-format.md)."
        )


class JobConfinementError(JobFormatError):
    """A processing job the processor refuses to run, before any effect: its branch, upload
    id or user id would place keys outside ``outputs/{branch}/[users/{userId}/]{uploadId}/``
    (``..``, ``/``, control characters, an empty or non-canonical branch); an object it
    names is not in its own upload folder ``uploads/{branch}/[users/{userId}/]{uploadId}/``
    of the upload bucket; or its claim check is not one the bridge wrote for the message's
    upload (another bucket, outside the claim prefix, larger than the cap, or holding a job
    of another upload id, branch or user). Such a message was forged or written by
    something other than the bridge; it fails on every delivery (no record, event or
    webhook) and ends in the dead-letter queue."""

    def __init__(self, problems: Iterable[str]) -> None:
        super().__init__("processing job (refused: it reaches outside its own folders)", problems)


class EventFormatError(JobFormatError):
    """A progress event body is not a valid transflow progress event.

    A subclass of :class:`JobFormatError`, so one ``except JobFormatError`` covers every
    malformed message the pipeline can receive.
    """


class UnknownConfigKeyWarning(UserWarning):
    """A configuration key transflow does not know; usually a typo. It is ignored."""


class ProvisionError(TransflowError):
    """A queue cannot be brought to the state transflow needs (for example, an existing
    queue of the same name is not FIFO, which SQS cannot change)."""


class QueueNotFoundError(TransflowError):
    """A queue transflow needs does not exist on the endpoint."""


class ConfirmationRequiredError(TransflowError):
    """A destructive operation (purge, delete) was asked for without the confirmation it
    needs."""


class ProvisionWarning(UserWarning):
    """Provisioning went through, but something in the configuration deserves a look (a
    visibility timeout too short for the function, an attribute the endpoint ignores)."""


class UploadError(TransflowError, ValueError):
    """``create_upload`` was called with arguments it cannot use (no files, a malformed
    content-type pattern, an upload id that cannot be a key segment, …)."""


class UploadRefusedError(UploadError):
    """One or more files of an upload were refused before anything was signed.

    ``problems`` holds ``(file name, reason)`` pairs, every refused file at once, so the
    browser can tell its user which files to drop or fix.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        listed = "; ".join(f"{name!r}: {reason}" for name, reason in self.problems)
        super().__init__(
            f"upload refused: {listed or 'no details'}. Remove or fix these files and "
            "ask for the upload again."
        )


class MultipartError(UploadError):
    """A multipart request (sign-parts, list-parts, complete, abort) cannot be served as
    sent; ``http_status`` is the status a server answers it with."""

    http_status = 400


class MultipartRefusedError(MultipartError):
    """Completing a multipart upload was refused (too large, a part too small, a part S3
    does not hold) and the upload was aborted: the browser starts the file again."""


class MultipartDeniedError(MultipartError, PermissionError):
    """The request may not touch this multipart upload: no valid stream token (401), or a
    token or ``authorize`` hook that does not cover the upload (403)."""

    http_status = 403

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.http_status = status


class MultipartUploadNotFoundError(MultipartError, LookupError):
    """S3 knows no such multipart upload (never begun, aborted, expired or completed)."""

    http_status = 404


class MultipartUploadGoneError(MultipartError):
    """Completion asked for a multipart upload that no longer exists and left no object:
    it was aborted (or expired). The browser starts the file again."""

    http_status = 409


class UploadMetadataError(TransflowError, ValueError):
    """An uploaded object's S3 metadata is not what ``create_upload`` writes.

    ``problems`` lists every problem found with the metadata key it concerns.
    """

    def __init__(self, key: str, problems: Iterable[str]) -> None:
        self.key = key
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(
            f"object {key!r} has unusable transflow metadata: {'; '.join(self.problems)}. "
            "Upload files through transflow.create_upload (or write the same x-amz-meta-* "
            "keys: uploadid, templateid, fields, userid, permissions, filecount)."
        )


class BridgeError(TransflowError):
    """Some S3 records could not be turned into queued jobs (raised by
    ``GroupingBridge.lambda_handler`` for direct and EventBridge invocations, so that Lambda
    retries the event and, in the end, sends it to the function's on-failure destination).

    ``result`` is the :class:`transflow.BridgeResult` with every failure and its reason.
    """

    def __init__(self, message: str, result: object) -> None:
        self.result = result
        super().__init__(message)


# -- templates and processing ------------------------------------------------------------


class DuplicateTemplateError(TransflowError, ValueError):
    """A template id was registered twice in one registry."""

    def __init__(self, template_id: str) -> None:
        self.template_id = template_id
        super().__init__(
            f"template {template_id!r} is already registered: give each template its own id, "
            "or use a separate TemplateRegistry"
        )


class TemplateDefinitionError(TransflowError, ValueError):
    """A template or step is declared wrongly (bad id, duplicate step, bad webhook URL)."""


class TemplateNotFoundError(TransflowError, LookupError):
    """A job names a template the registry does not have."""

    def __init__(self, template_id: str, known: Iterable[str]) -> None:
        self.template_id = template_id
        self.known: tuple[str, ...] = tuple(sorted(known))
        listed = ", ".join(repr(k) for k in self.known) or "none"
        super().__init__(
            f"no template {template_id!r} is registered (known: {listed}); register it with "
            "registry.template(...) in the processor, or fix the templateId the uploader sends"
        )


class EmptyTemplateError(TransflowError):
    """A template without steps was asked to run a job."""

    def __init__(self, template_id: str) -> None:
        self.template_id = template_id
        super().__init__(
            f"template {template_id!r} has no steps, so it cannot process anything: add one "
            "with @template.step('name')"
        )


class OutputPathError(TransflowError, ValueError):
    """An output name would land outside the job's output prefix (or on its status record)."""


class StepUsageError(TransflowError, ValueError):
    """A step called the StepContext with arguments it cannot accept."""


class ToolError(TransflowError):
    """An external tool run with ``ctx.run`` did not succeed."""

    def __init__(self, message: str, args: Iterable[str], stderr_tail: str = "") -> None:
        self.command: tuple[str, ...] = tuple(args)
        self.stderr_tail = stderr_tail
        super().__init__(message)


class ToolNotFoundError(ToolError):
    """The program of ``ctx.run`` is not installed (not on PATH)."""


class ToolFailedError(ToolError):
    """The command exited with a non-zero code; ``returncode`` and ``stderr_tail`` say why."""

    def __init__(self, args: Iterable[str], returncode: int, stderr_tail: str) -> None:
        self.returncode = returncode
        command = tuple(args)
        tail = stderr_tail.strip() or "(no output on stderr)"
        super().__init__(
            f"{command[0] if command else 'command'} exited with code {returncode}: {tail}",
            command,
            stderr_tail,
        )


class ToolTimeoutError(ToolError):
    """The command ran longer than its timeout and was killed."""

    def __init__(self, args: Iterable[str], timeout: float, stderr_tail: str) -> None:
        self.timeout = timeout
        command = tuple(args)
        super().__init__(
            f"{command[0] if command else 'command'} did not finish within {timeout:g} s and "
            "was killed: raise the timeout (and the Lambda timeout) or split the work",
            command,
            stderr_tail,
        )


class JobCancelledError(TransflowError):
    """A job's delivery was given up (its handler timed out, or the worker is stopping)
    before the job completed; its message returns through visibility, and no error is
    recorded, since another delivery may already be running it."""

    def __init__(self, upload_id: str, step: str | None) -> None:
        self.upload_id = upload_id
        self.step = step
        where = f" before step {step!r}" if step else ""
        super().__init__(
            f"job for upload {upload_id!r} was cancelled{where}: its delivery was given up "
            "(handler timeout or shutdown); the queue delivers it again"
        )


class UploadCanceledError(JobCancelledError):
    """The upload was cancelled by its user or an operator (``cancel_upload``, ``transflow
    cancel``): its status record says ``ASSEMBLY_CANCELED``. The processor stops before the
    next step, records the outputs already written, publishes ``cancelled`` and deletes the
    message: nothing is retried or dead-lettered."""

    def __init__(self, upload_id: str, step: str | None) -> None:
        super().__init__(upload_id, step)
        where = f" before step {step!r}" if step else ""
        self.args = (
            f"upload {upload_id!r} was cancelled{where} (its status record says "
            "ASSEMBLY_CANCELED); the job stops and is not retried",
        )


class LeaseLostError(JobCancelledError):
    """A worker could not confirm that it still holds its job's message (its heartbeats,
    ChangeMessageVisibility, kept failing until the visibility timeout may have run out), so
    another worker may be running the job: it stops before completing, and leaves the
    record, the progress and the webhook to the delivery that holds the message."""

    def __init__(self, upload_id: str, step: str | None) -> None:
        super().__init__(upload_id, step)
        where = f" before step {step!r}" if step else " before completing"
        self.args = (
            f"job for upload {upload_id!r} stopped{where}: its worker could not confirm its "
            "lease on the message (heartbeats failed past the visibility timeout), so another "
            "worker may hold it; the job completes once, in the delivery that holds it",
        )


class JobFailedError(TransflowError):
    """A processing job did not complete; ``__cause__`` is what went wrong.

    The message goes back to the queue through its visibility timeout and is retried until
    the queue's redrive policy moves it to the dead-letter queue."""

    def __init__(
        self,
        upload_id: str | None,
        reason: str,
        *,
        template_id: str | None = None,
        step: str | None = None,
        code: str = "JOB_FAILED",
    ) -> None:
        self.upload_id = upload_id
        self.template_id = template_id
        self.step = step
        self.code = code
        self.reason = reason
        where = f" in step {step!r}" if step else ""
        super().__init__(
            f"job for upload {upload_id!r}{where} failed ({code}): {reason}. It will be "
            "retried through the queue's visibility timeout and dead-lettered after "
            "maxReceiveCount deliveries."
        )


class BatchFailedError(TransflowError):
    """Every record of a Lambda batch failed (raised only when the processor is asked to)."""

    def __init__(self, message_ids: Iterable[str]) -> None:
        self.message_ids: tuple[str, ...] = tuple(message_ids)
        super().__init__(
            f"all {len(self.message_ids)} records of the batch failed; see the WARNING and "
            "ERROR log lines above for each one"
        )


class WebhookDestinationError(ConfigError):
    """A webhook URL points somewhere webhooks may not go: cleartext http, or a host that is
    or resolves to a loopback, private, link-local, metadata or otherwise non-public address.
    ``url``, ``reason`` and ``hint`` (the option that would allow it) say which and why."""

    def __init__(self, url: object, reason: str, hint: str) -> None:
        self.url = url
        self.reason = reason
        self.hint = hint
        super().__init__(f"webhook_url {url!r} is refused: {reason}. To send it: {hint}")


class ProgressEventTooLargeError(TransflowError, ValueError):
    """A progress event is over the limit for one message where progress goes (the queue's
    ``sqs.maxMessageBytes``; 256 KiB on the SNS topic of fan-out mode). It was refused, not
    sent: keep large data in S3 and put its key in the event."""


class WebhookSignatureError(TransflowError):
    """A webhook request's signature is missing, wrong or too old: reject the request."""


class ChannelError(TransflowError, ValueError):
    """A progress channel is neither ``upload:{branch}:{uploadId}`` nor ``upload:{branch}:*``."""


class SubscriptionDeniedError(TransflowError, PermissionError):
    """The hub's ``authorize`` hook refused this principal the channel."""


class SubscriptionClosedError(TransflowError):
    """The subscription ended: closed by its owner, or its hub stopped. Subscribe again."""


class SubscriberLaggedError(SubscriptionClosedError):
    """The subscriber fell more events behind than its buffer holds and was cut off, so it
    would not slow the others; reconnect with the last event id it saw to resume."""


class InstanceQueueLostError(SubscriberLaggedError):
    """The fan-out hub found its instance queue (or its subscription to the progress topic)
    gone, swept or deleted from outside, and made a new one; events published in between did
    not reach this hub. Reconnect with the last event id you saw: another instance may still
    replay them, and the snapshot carries the upload's state."""


class HubForkedError(SubscriptionClosedError):
    """A :class:`~transflow.ProgressHub` on the shared progress queue was started in another
    process (before a fork: gunicorn ``--preload``, multiprocessing) and cannot serve this
    one; start the hub in each worker, or use fan-out mode (``sqs.progressFanout: "sns"``),
    where a forked hub restarts with a queue of its own."""


class HubLeaseHeldError(SubscriptionClosedError):
    """Another :class:`~transflow.ProgressHub` process holds the lease on the shared
    progress queue, so this one consumes nothing and serves no streams (SQS would give each
    event to one of them: every browser would see a part). Run one stream process per
    progress queue, or use fan-out mode (``sqs.progressFanout: "sns"``)."""


class WebAssetNotFoundError(TransflowError, LookupError):
    """A name that is not a file of the browser client (``transflow.WEB_ASSETS`` lists
    them), or a package installed without its files on disk: serve :func:`transflow.web_asset`
    from a route."""


class SseEncodingError(TransflowError, ValueError):
    """A Server-Sent Events field cannot be encoded: ``id`` and ``event`` must not contain
    CR, LF or NUL, and ``retry`` must be a non-negative integer."""


class StreamTokenError(TransflowError, PermissionError):
    """A stream token cannot be used: malformed, forged (signed with another secret or
    changed) or expired. Answer 401; the browser asks its host for a fresh token."""


class StreamTokenMalformedError(StreamTokenError):
    """The text is not a transflow stream token (wrong version, shape, encoding or length)."""


class StreamTokenForgedError(StreamTokenError):
    """The token's signature does not match: it was changed, made up, or signed with another
    secret (check that every server shares ``TRANSFLOW_STREAM_SECRET``)."""


class StreamTokenExpiredError(StreamTokenError):
    """The token was genuine but its time is up; ask the host for a fresh one."""


class CancelRefusedError(TransflowError):
    """A cancel request from a browser was refused before anything was written: ``status``
    is the HTTP status to answer (400: not an upload id or branch; 401: no or a bad stream
    token; 403: the token or the ``authorize`` hook does not cover this upload). The message
    says which, and what the caller can do."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


class TraceContextError(TransflowError, ValueError):
    """A trace context given to transflow is not a W3C ``traceparent`` (``00-`` then 32 and
    16 lower-case hex digits and the flags, ``-`` between them, ids not all zero) or its
    ``tracestate`` is not one."""
