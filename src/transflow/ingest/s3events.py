"""S3 "object created" notifications, in the shapes S3 delivers them, as plain records.

- a direct S3 notification event (S3 → Lambda): ``{"Records": [{"eventSource": "aws:s3"}]}``;
- an SQS event whose bodies are S3 notifications (S3 → standard queue → Lambda), including
  S3's ``s3:TestEvent`` and bodies wrapped by SNS (S3 → SNS → SQS);
- an SNS event whose messages are S3 notifications (S3 → SNS → Lambda);
- an EventBridge ``Object Created`` event (also when EventBridge delivers it through SQS).

A record from any other service (an SNS message that is not an S3 notification, Kinesis,
DynamoDB, …) is a failure, never a silent skip: a bridge wired to the wrong source must say
so. Each record is read on its own, so one hostile record (a 5,000-digit number, a list
where a string belongs) fails alone and the rest of its batch goes on.

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

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr

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
    SNS = "sns"
    EVENTBRIDGE = "eventbridge"
    UNKNOWN = "unknown"


@attrs.frozen
class S3Record:
    """One created object. ``ref`` names the record uniquely within its event (for results
    and logs); ``message_id`` is the SQS message it came in, if any."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    ref: str
    bucket: str
    key: str
    event_name: str
    size: int | None = None
    etag: str | None = None
    sequencer: str | None = None
    message_id: str | None = None
    version_id: str | None = None

    @property
    def version(self) -> str | None:
        """What tells two writes of this key apart: S3's sequencer, else the ETag."""
        return self.sequencer or self.etag


@attrs.frozen
class SkippedRecord:
    """A record the bridge had no work for (a test event, a deletion, …), and why."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    ref: str
    reason: str
    message_id: str | None = None


@attrs.frozen
class FailedRecord:
    """A record that did not become a queued job, and why. ``retryable`` says whether the
    same record may succeed later (throttling, a network error) or needs a person."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    ref: str
    reason: str
    message_id: str | None = None
    bucket: str | None = None
    key: str | None = None
    retryable: bool = False


@attrs.frozen
class ParsedEvent:
    """Every record of an event, sorted into created objects, skips and failures."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

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


def _text(value: object) -> str | None:
    """A non-empty string field, else None: a hostile record's list or number in a string
    field must not reach a hash or a log line as something else."""
    return value if isinstance(value, str) and value else None


def _located(container: object) -> tuple[str | None, str | None, dict[str, Any]]:
    """``bucket.name``, ``object.key`` and the ``object`` of an S3 record's ``s3`` (or an
    EventBridge event's ``detail``); None where a field is missing or not a string."""
    bucket = container.get("bucket") if isinstance(container, dict) else None
    obj = container.get("object") if isinstance(container, dict) else None
    obj = obj if isinstance(obj, dict) else {}
    key = obj.get("key")
    name = _text(bucket.get("name")) if isinstance(bucket, dict) else None
    return name, key if isinstance(key, str) else None, obj


def _source_of(record: Mapping[str, Any]) -> object:
    # S3, SQS, Kinesis and DynamoDB write ``eventSource``; SNS writes ``EventSource``.
    return record.get("eventSource", record.get("EventSource"))


def _guarded(
    items: Iterator[S3Record | SkippedRecord | FailedRecord], ref: str, message_id: str | None
) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    """``items``, ending in a failure of ``ref`` if reading them raises: whatever a hostile
    record holds, it fails alone."""
    try:
        yield from items
    except (ValueError, TypeError, RecursionError, AttributeError) as exc:
        yield FailedRecord(ref, f"record cannot be read: {type(exc).__name__}", message_id)


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
        yield from _guarded(_notification_record(record, ref, message_id), ref, message_id)


def _notification_record(
    record: object, ref: str, message_id: str | None
) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    if not isinstance(record, dict):
        yield FailedRecord(ref, "record is not a JSON object", message_id)
        return
    source = _source_of(record)
    if source not in (None, "aws:s3") or (source is None and "s3" not in record):
        yield FailedRecord(ref, _not_s3(source), message_id)
        return
    name = _text(record.get("eventName"))
    if name is None or not name.startswith(_CREATED_PREFIX):
        yield SkippedRecord(ref, f"{name or 'unnamed event'} is not an object creation", message_id)
        return
    bucket_name, raw_key, obj = _located(record.get("s3"))
    if bucket_name is None or raw_key is None:
        yield FailedRecord(ref, "record lacks s3.bucket.name or s3.object.key", message_id)
        return
    yield S3Record(
        ref=ref,
        bucket=bucket_name,
        key=decode_key(raw_key),
        event_name=name,
        size=_size(obj.get("size")),
        etag=_etag(obj.get("eTag") or obj.get("etag")),
        sequencer=_text(obj.get("sequencer")),
        message_id=message_id,
        version_id=_text(obj.get("versionId")),
    )


def _not_s3(source: object) -> str:
    named = repr(source) if isinstance(source, str) else "no eventSource"
    return (
        f"record from {named[:60]} is not an S3 notification: the bridge reads S3 "
        "notifications only (directly, through SQS or SNS, or from EventBridge); check what "
        "this function's trigger is wired to"
    )


def _records_of_eventbridge(
    event: Mapping[str, Any], prefix: str, message_id: str | None
) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    kind = _text(event.get("detail-type"))
    if kind != _EVENTBRIDGE_CREATED:
        yield SkippedRecord(
            prefix, f"EventBridge {str(kind)[:80]!r} is not an object creation", message_id
        )
        return
    detail = event.get("detail")
    bucket_name, raw_key, obj = _located(detail)
    if bucket_name is None or raw_key is None:
        yield FailedRecord(
            prefix, "EventBridge event lacks detail.bucket.name or detail.object.key", message_id
        )
        return
    reason = _text(detail.get("reason")) if isinstance(detail, dict) else None
    yield S3Record(
        ref=prefix,
        bucket=bucket_name,
        key=decode_key(raw_key),
        event_name=f"{_CREATED_PREFIX}{reason or 'Unknown'}",
        size=_size(obj.get("size")),
        etag=_etag(obj.get("etag")),
        sequencer=_text(obj.get("sequencer")),
        message_id=message_id,
        version_id=_text(obj.get("version-id")),
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
        except (ValueError, RecursionError):
            # ValueError also covers integers past Python's 4,300-digit conversion limit.
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
            "message body is neither an S3 notification nor an EventBridge event"
            + (" (an SNS message from another source)" if depth else ""),
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
        yield from _guarded(
            _records_of_body(record.get("body", ""), message_id, message_id), message_id, message_id
        )


def _sns_items(records: list[Any]) -> Iterator[S3Record | SkippedRecord | FailedRecord]:
    for index, record in enumerate(records):
        ref = f"Records[{index}]"
        sns = record.get("Sns") if isinstance(record, dict) else None
        if not isinstance(record, dict) or _source_of(record) != "aws:sns":
            source = _source_of(record) if isinstance(record, dict) else None
            yield FailedRecord(ref, _not_s3(source))
        elif not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
            yield FailedRecord(ref, "SNS record without a Sns.Message string")
        else:
            # The SNS message id stands in for the SQS one: it names the record in logs.
            message = sns["Message"]
            yield from _guarded(_records_of_body(message, ref, None, depth=1), ref, None)


def _first_source(records: list[Any]) -> object:
    first = records[0] if isinstance(records[0], dict) else {}
    if "messageId" in first:
        return "aws:sqs"
    return _source_of(first)


def parse_event(event: object) -> ParsedEvent:
    """Sort an event of any of the shapes into records, skips and failures."""
    if not isinstance(event, dict):
        return _collect(
            EventSource.UNKNOWN,
            iter([FailedRecord("event", f"event is {type(event).__name__}, not a JSON object")]),
        )
    records = event.get("Records")
    if isinstance(records, list) and records:
        source = _first_source(records)
        if source in ("aws:sqs", "aws:sns"):
            kind = EventSource.SQS if source == "aws:sqs" else EventSource.SNS
            items = _sqs_items if source == "aws:sqs" else _sns_items
            return _collect(kind, items(records))
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
