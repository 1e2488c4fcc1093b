"""Sending failed jobs from the dead-letter queue back to the processing queue.

:func:`redrive` uses SQS's StartMessageMoveTask where the endpoint has it, otherwise it
receives, sends with the original MessageGroupId and a deterministic deduplication id, and
deletes only what was sent (at-least-once; never a delete before a successful send).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import botocore.exceptions

from transflow._aws.errors import response_error_codes
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import EntryFailure, OutgoingMessage, delete_batch, send_batch
from transflow._wire.jsontext import JsonTextError, parse_json
from transflow._wire.limits import MAX_MESSAGE_BYTES
from transflow._wire.messages import ReceivedMessage
from transflow.errors import TransflowError
from transflow.ops.dlq import FailedJob, next_batch, peek, release, visible_count

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["RedriveProgress", "RedriveReport", "plan_resend", "redrive", "redrive_dedup_id"]

log = logging.getLogger(__name__)

REDRIVE_VISIBILITY_SEC = 120
"""How long a message being redriven is hidden: the time to send and delete one batch."""

# Error codes with which an endpoint says it does not have an operation.
_UNSUPPORTED = frozenset(
    {
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "InvalidAction",
        "NotImplemented",
        "NotImplementedError",
        "UnknownOperationException",
        "500",
        "501",
    }
)


@attrs.frozen
class RedriveProgress:
    """How far a redrive is, given to the ``on_progress`` callback after every batch."""

    moved: int
    failed: int
    limit: int | None


@attrs.frozen
class RedriveReport:
    """What :func:`redrive` did.

    ``mode`` is ``"move-task"`` (SQS moves the messages in the background; ``task_handle``
    identifies the task and ``moved`` is the DLQ depth when it started), ``"resend"`` (moved
    by this process) or ``"dry-run"`` (nothing moved; ``moved`` counts what would be).
    ``failed`` lists the messages left in the DLQ, by message id, with why; ``no_move_task``
    says the re-send was the fallback because the endpoint has no move task."""

    mode: Literal["move-task", "resend", "dry-run"]
    moved: int = 0
    failed: tuple[EntryFailure, ...] = ()
    task_handle: str | None = None
    jobs: tuple[FailedJob, ...] = ()
    no_move_task: bool = False
    """The endpoint has no StartMessageMoveTask (moto, LocalStack): re-sent instead."""

    @property
    def ok(self) -> bool:
        """Whether nothing was left behind for a reason."""
        return not self.failed


# -- decisions ----------------------------------------------------------------------------


def redrive_dedup_id(message: ReceivedMessage) -> str:
    """A deduplication id for re-sending a DLQ message: the same for the same stay in the
    DLQ (so a redrive interrupted between send and delete does not queue the job twice),
    different from the id the job was first sent with (which the processing queue may
    still remember, and would silently drop)."""
    stay = message.attributes.get("SentTimestamp", "")
    digest = hashlib.sha256(f"redrive\0{message.message_id}\0{stay}".encode()).hexdigest()
    return f"redrive-{digest[:64]}"


def plan_resend(
    messages: Sequence[ReceivedMessage],
) -> tuple[list[tuple[str, OutgoingMessage]], list[EntryFailure]]:
    """What to send for a received batch, keyed by message id, and what cannot be sent.

    A message without a MessageGroupId takes the upload id of its job as its group; one
    with neither stays in the DLQ."""
    outgoing: list[tuple[str, OutgoingMessage]] = []
    refused: list[EntryFailure] = []
    for message in messages:
        group = message.group_id or _upload_id(message.body)
        if not group:
            refused.append(
                EntryFailure(
                    message.message_id,
                    "NoMessageGroup",
                    "the message has no MessageGroupId and its body no uploadId; move it by hand",
                    True,
                )
            )
            continue
        outgoing.append(
            (
                message.message_id,
                OutgoingMessage(message.body, group_id=group, dedup_id=redrive_dedup_id(message)),
            )
        )
    return outgoing, refused


def _upload_id(body: str) -> str | None:
    try:
        data = parse_json(body)
    except JsonTextError:
        return None
    upload = data.get("uploadId") if isinstance(data, dict) else None
    return upload if isinstance(upload, str) and upload else None


# -- I/O ----------------------------------------------------------------------------------


def _is_unsupported(response: Mapping[str, Any]) -> bool:
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return bool(response_error_codes(response) & _UNSUPPORTED) or status in (501,)


class _NoMoveTask(Exception):
    """The endpoint lacks StartMessageMoveTask: raised from botocore's retry check, since
    asking again cannot help (each retry is another 500 and, on moto, another traceback)."""


def _refuse_retry_when_unsupported(response: Any = None, **_: Any) -> None:
    if response is not None and _is_unsupported(response[1]):
        raise _NoMoveTask(", ".join(sorted(response_error_codes(response[1]))) or "?")


def _try_move_task(sqs: SQSClient, dlq_url: str, processing_url: str) -> RedriveReport | None:
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["QueueArn", "ApproximateNumberOfMessages"]
    )["Attributes"]
    target = sqs.get_queue_attributes(QueueUrl=processing_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    hook = f"needs-retry.{sqs.meta.service_model.service_name}.StartMessageMoveTask"
    sqs.meta.events.register_first(hook, _refuse_retry_when_unsupported, unique_id=hook)
    try:
        started = sqs.start_message_move_task(
            SourceArn=attributes["QueueArn"], DestinationArn=target
        )
    except (_NoMoveTask, botocore.exceptions.ClientError) as exc:
        if isinstance(exc, _NoMoveTask) or _is_unsupported(exc.response):
            log.info("the endpoint has no StartMessageMoveTask (%s); re-sending instead", exc)
            return None
        raise
    finally:
        sqs.meta.events.unregister(hook, unique_id=hook)
    return RedriveReport(
        mode="move-task",
        moved=int(attributes.get("ApproximateNumberOfMessages", "0")),
        task_handle=started["TaskHandle"],
    )


def redrive(
    sqs: SQSClient,
    dlq_url: str,
    processing_url: str,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    use_move_task: bool | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    on_progress: Callable[[RedriveProgress], None] | None = None,
    policy: RetryPolicy | None = None,
    wait_sec: int = 1,
) -> RedriveReport:
    """Move failed jobs from the DLQ back to the processing queue.

    ``use_move_task``: None (the default) asks SQS to move the messages with
    StartMessageMoveTask and falls back to re-sending when the endpoint does not have it;
    False always re-sends; True never falls back. A ``limit`` or a ``dry_run`` always
    re-sends (a move task cannot stop after N messages). A re-sent message keeps its body
    and MessageGroupId; it is deleted from the DLQ only once its send succeeded, and a
    group whose message failed to send keeps its later messages too, so order holds."""
    if limit is not None and limit < 1:
        raise TransflowError(f"redrive limit must be at least 1, not {limit}")
    if dry_run:
        jobs = peek(sqs, dlq_url, limit or visible_count(sqs, dlq_url) or 1, wait_sec=wait_sec)
        return RedriveReport(mode="dry-run", moved=len(jobs), jobs=jobs)
    if use_move_task is not False and limit is None:
        if use_move_task:
            report = _try_move_task(sqs, dlq_url, processing_url)
            if report is None:
                raise TransflowError(
                    "the endpoint does not support StartMessageMoveTask; redrive with "
                    "use_move_task=None or False to re-send instead"
                )
            return report
        report = _try_move_task(sqs, dlq_url, processing_url)
        if report is not None:
            return report
        fallback = True
    else:
        fallback = False
    resent = _resend(
        sqs,
        dlq_url,
        processing_url,
        limit=limit,
        max_bytes=max_bytes,
        on_progress=on_progress,
        policy=policy,
        wait_sec=wait_sec,
    )
    return attrs.evolve(resent, no_move_task=fallback)


def _resend(
    sqs: SQSClient,
    dlq_url: str,
    processing_url: str,
    *,
    limit: int | None,
    max_bytes: int,
    on_progress: Callable[[RedriveProgress], None] | None,
    policy: RetryPolicy | None,
    wait_sec: int,
) -> RedriveReport:
    moved = 0
    failed: list[EntryFailure] = []
    kept: list[ReceivedMessage] = []  # left in the DLQ; released at the end
    attempted: set[str] = set()
    try:
        while limit is None or moved < limit:
            want = 10 if limit is None else min(10, limit - moved)
            batch = next_batch(sqs, dlq_url, want, REDRIVE_VISIBILITY_SEC, wait_sec)
            fresh = [m for m in batch if m.message_id not in attempted]
            kept.extend(m for m in batch if m.message_id in attempted)
            if not fresh:
                break
            attempted.update(m.message_id for m in fresh)
            sent, batch_failed = _move_batch(
                sqs, dlq_url, processing_url, fresh, max_bytes=max_bytes, policy=policy
            )
            moved += len(sent)
            failed.extend(batch_failed)
            kept.extend(m for m in fresh if m.message_id not in sent)
            if on_progress is not None:
                on_progress(RedriveProgress(moved, len(failed), limit))
    finally:
        release(sqs, dlq_url, kept)
    return RedriveReport(mode="resend", moved=moved, failed=tuple(failed))


def _move_batch(
    sqs: SQSClient,
    dlq_url: str,
    processing_url: str,
    batch: Sequence[ReceivedMessage],
    *,
    max_bytes: int,
    policy: RetryPolicy | None,
) -> tuple[set[str], list[EntryFailure]]:
    """Send one received batch and delete what was sent; (ids moved, failures).

    Sent in waves, the first message of every group, then the second, and so on: a group
    whose message failed keeps its later messages in the DLQ unsent, so order holds."""
    failures: list[EntryFailure] = []
    sendable: list[ReceivedMessage] = []
    for message in batch:
        if any(k.startswith("attr:") for k in message.attributes):
            failures.append(
                EntryFailure(
                    message.message_id,
                    "MessageAttributes",
                    "the message has message attributes, which a re-send would not carry; "
                    "redrive it with StartMessageMoveTask (the console's 'Start DLQ redrive')",
                    True,
                )
            )
        else:
            sendable.append(message)
    outgoing, refused = plan_resend(sendable)
    failures += refused
    group_of = {key: message.group_id or "" for key, message in outgoing}
    # The group of a refused message is broken too (when it has one).
    broken = {m.group_id for m in batch if m.group_id and m.message_id in {f.key for f in failures}}
    sent: list[str] = []
    waves = _waves(outgoing, group_of)
    for wave in waves:
        ready = [(key, message) for key, message in wave if group_of[key] not in broken]
        for key, _ in wave:
            if group_of[key] in broken:
                failures.append(
                    EntryFailure(
                        key,
                        "HeldForOrder",
                        "an earlier message of its group was not sent, so it stays in the "
                        "DLQ to keep the group's order",
                        False,
                    )
                )
        if not ready:
            continue
        result = send_batch(sqs, processing_url, ready, max_bytes=max_bytes, policy=policy)
        sent += result.succeeded
        failures += result.failed
        broken.update(group_of[f.key] for f in result.failed)
    handles = {m.message_id: m.receipt_handle for m in batch}
    deleted = delete_batch(sqs, dlq_url, [(key, handles[key]) for key in sent], policy=policy)
    # Sent but not deleted: it reappears in the DLQ and a later redrive sends it again with
    # the same deduplication id, which SQS drops within five minutes. Reported either way.
    failures += [
        attrs.evolve(f, message=f"sent, but still in the DLQ: {f.message}") for f in deleted.failed
    ]
    return set(deleted.succeeded), failures


def _waves(
    outgoing: Sequence[tuple[str, OutgoingMessage]], group_of: Mapping[str, str]
) -> list[list[tuple[str, OutgoingMessage]]]:
    """The n-th message of every group in wave n, each wave in received order."""
    waves: list[list[tuple[str, OutgoingMessage]]] = []
    depth: dict[str, int] = {}
    for key, message in outgoing:
        index = depth.get(group_of[key], 0)
        depth[group_of[key]] = index + 1
        if index == len(waves):
            waves.append([])
        waves[index].append((key, message))
    return waves
