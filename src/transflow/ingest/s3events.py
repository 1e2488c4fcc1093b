"""S3 "object created" notifications, in the three shapes S3 delivers them, as plain records.

- a direct S3 notification event (S3 → Lambda): ``{"Records": [{"eventSource": "aws:s3"}]}``;
- an SQS event whose bodies are S3 notifications (S3 → standard queue → Lambda), including
  S3's ``s3:TestEvent`` and bodies wrapped by SNS (S3 → SNS → SQS);
- an EventBridge ``Object Created`` event (also when EventBridge delivers it through SQS).

Keys are decoded as S3 encodes them: ``+`` is a space, ``%2B`` a plus, and ``%2F`` a slash
(some endpoints encode it). Everything that is not an object-created record is skipped with
a reason; every body that cannot be read is a failure with a reason. Pure: no AWS.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus

import attrs

__all__ = [
    "EventSource",
    "FailedRecord",
    "ParsedEvent",
    "S3Record",
    "SkippedRecord",
    "decode_key",
    "parse_event",
]

log = logging.getLogger(__name__)

_CREATED_PREFIX = "ObjectCreated:"
_EVENTBRIDGE_CREATED = "Object Created"


class EventSource(str, enum.Enum):
    """How the notifications reached the bridge."""

    S3 = "s3"
    SQS = "sqs"
    EVENTBRIDGE = "eventbridge"
    UNKNOWN = "unknown"


@attrs.frozen
class S3Record:
    """One created object. ``ref`` names the record uniquely within its event (for results
    and logs); ``message_id`` is the SQS message it came in, if any."""

    ref: str
    bucket: str
    key: str
    event_name: str
    size: int | None = None
    etag: str | None = None
    sequencer: str | None = None
    message_id: str | None = None

    @property
    def version(self) -> str | None:
        """What tells two writes of this key apart: S3's sequencer, else the ETag."""
        return self.sequencer or self.etag


@attrs.frozen
class SkippedRecord:
    """A record the bridge had no work for (a test event, a deletion, …), and why."""

    ref: str
    reason: str
    message_id: str | None = None


@attrs.frozen
class FailedRecord:
    """A record that did not become a queued job, and why. ``retryable`` says whether the
    same record may succeed later (throttling, a network error) or needs a person."""

    ref: str
    reason: str
    message_id: str | None = None
    bucket: str | None = None
    key: str | None = None
    retryable: bool = False


@attrs.frozen
class ParsedEvent:
    """Every record of an event, sorted into created objects, skips and failures."""

    source: EventSource
    records: tuple[S3Record, ...] = ()
    skipped: tuple[SkippedRecord, ...] = ()
    failed: tuple[FailedRecord, ...] = ()


def decode_key(raw: str) -> str:
    """An object key as S3 writes it in notifications, decoded."""
    return unquote_plus(raw)


def _etag(value: object) -> str | None:
    return value.strip('"') if isinstance(value, str) and value else None


def _size(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _created(
    container: object, ref: str, event_name: str, message_id: str | None
) -> S3Record | None:
    """The record of ``{"bucket": {"name"}, "object": {"key", ...}}``, the part both shapes
    share (``s3`` of a notification record, ``detail`` of an EventBridge event); None when
    the bucket name or the key is missing."""
    if not isinstance(container, dict):
        return None
    bucket, obj = container.get("bucket"), container.get("object")
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    raw_key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(bucket_name, str) or not bucket_name or not isinstance(raw_key, str):
        return None
    assert isinstance(obj, dict)
    return S3Record(
        ref=ref,
        bucket=bucket_name,
        key=decode_key(raw_key),
        event_name=event_name,
        size=_size(obj.get("size")),
        etag=_etag(obj.get("eTag") or obj.get("etag")),
        sequencer=obj.get("sequencer") or None,
        message_id=message_id,
    )


def _records_of_notification(
    body: Mapping[str, Any], prefix: str, message_id: str | None
) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    """The records of an S3 notification (``{"Records": [...]}``)."""
    records = body.get("Records")
    if not isinstance(records, list):
        yield FailedRecord(prefix, "S3 notification without a Records list", message_id)
        return
    for index, record in enumerate(records):
        ref = f"{prefix}[{index}]"
        if not isinstance(record, dict):
            yield FailedRecord(ref, "record is not a JSON object", message_id)
            continue
        name = str(record.get("eventName", ""))
        if not name.startswith(_CREATED_PREFIX):
            yield SkippedRecord(
                ref, f"{name or 'unnamed event'} is not an object creation", message_id
            )
            continue
        created = _created(record.get("s3"), ref, name, message_id)
        yield created or FailedRecord(
            ref, "record lacks s3.bucket.name or s3.object.key", message_id
        )


def _records_of_eventbridge(
    event: Mapping[str, Any], prefix: str, message_id: str | None
) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    kind = event.get("detail-type")
    if kind != _EVENTBRIDGE_CREATED:
        yield SkippedRecord(prefix, f"EventBridge {kind!r} is not an object creation", message_id)
        return
    detail = event.get("detail")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    name = f"{_CREATED_PREFIX}{reason or 'Unknown'}"
    yield _created(detail, prefix, name, message_id) or FailedRecord(
        prefix, "EventBridge event lacks detail.bucket.name or detail.object.key", message_id
    )


def _is_eventbridge(data: Mapping[str, Any]) -> bool:
    return "detail-type" in data and data.get("source") == "aws.s3"


def _records_of_body(
    body: object, prefix: str, message_id: str | None, depth: int = 0
) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    """Whatever one SQS message body holds."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, RecursionError):
            yield FailedRecord(prefix, "message body is not JSON", message_id)
            return
    if not isinstance(body, dict):
        yield FailedRecord(prefix, "message body is not a JSON object", message_id)
        return
    if body.get("Event") == "s3:TestEvent":
        yield SkippedRecord(
            prefix, "s3:TestEvent (sent when a notification is configured)", message_id
        )
    elif "Records" in body:
        yield from _records_of_notification(body, prefix, message_id)
    elif _is_eventbridge(body):
        yield from _records_of_eventbridge(body, prefix, message_id)
    elif body.get("Type") == "Notification" and "Message" in body and depth == 0:
        # S3 → SNS → SQS without raw message delivery: the notification is a string inside.
        yield from _records_of_body(body["Message"], prefix, message_id, depth + 1)
    else:
        yield FailedRecord(
            prefix,
            "message body is neither an S3 notification nor an EventBridge event",
            message_id,
        )


def _collect(
    source: EventSource, items: Iterator[S3Record | SkippedRecord | FailedRecord]
) -> ParsedEvent:
    records: list[S3Record] = []
    skipped: list[SkippedRecord] = []
    failed: list[FailedRecord] = []
    for item in items:
        if isinstance(item, S3Record):
            records.append(item)
        elif isinstance(item, SkippedRecord):
            log.info("skipped %s: %s", item.ref, item.reason)
            skipped.append(item)
        else:
            log.warning("unreadable %s: %s", item.ref, item.reason)
            failed.append(item)
    return ParsedEvent(source, tuple(records), tuple(skipped), tuple(failed))


def _sqs_items(records: list[Any]) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    for index, record in enumerate(records):
        message_id = record.get("messageId") if isinstance(record, dict) else None
        if not isinstance(message_id, str) or not message_id:
            yield FailedRecord(f"Records[{index}]", "SQS record without a messageId")
            continue
        yield from _records_of_body(record.get("body", ""), message_id, message_id)


def parse_event(event: object) -> ParsedEvent:
    """Sort an event of any of the three shapes into records, skips and failures."""
    if not isinstance(event, dict):
        return _collect(
            EventSource.UNKNOWN,
            iter([FailedRecord("event", f"event is {type(event).__name__}, not a JSON object")]),
        )
    records = event.get("Records")
    if isinstance(records, list) and records:
        first = records[0] if isinstance(records[0], dict) else {}
        if first.get("eventSource") == "aws:sqs" or "messageId" in first:
            return _collect(EventSource.SQS, _sqs_items(records))
        return _collect(EventSource.S3, _records_of_notification(event, "Records", None))
    if _is_eventbridge(event):
        ref = f"eventbridge:{event.get('id', 'event')}"
        return _collect(EventSource.EVENTBRIDGE, _records_of_eventbridge(event, ref, None))
    if isinstance(records, list):
        return ParsedEvent(EventSource.S3)  # an empty batch: nothing to do
    return _collect(
        EventSource.UNKNOWN,
        iter(
            [
                FailedRecord(
                    "event",
                    "not an S3 notification, an SQS event or an EventBridge event; "
                    "point S3 notifications (or a queue of them) at the bridge",
                )
            ]
        ),
    )
