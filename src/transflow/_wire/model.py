"""The wire format: processing jobs and progress events, and their JSON.

Python names are snake_case; the JSON is camelCase exactly as the architecture spec writes it.
Every class here is a frozen, slotted attrs class; one cattrs converter (:data:`converter`)
turns them into wire dictionaries and back. Parsing checks the whole input first and reports
every problem with its path, so a sender fixes a message in one round trip.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from typing import Any, TypeAlias, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from transflow._wire.channels import upload_channel
from transflow._wire.limits import is_sqs_id
from transflow.errors import EventFormatError, JobFormatError

__all__ = [
    "JsonValue",
    "ProcessingJob",
    "ProgressEvent",
    "ProgressType",
    "S3ObjectRef",
    "UserContext",
    "converter",
    "format_timestamp",
    "parse_timestamp",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
"""Any value JSON can hold: what `fields`, `metadata` and an event's extra fields carry."""
JsonObject: TypeAlias = "dict[str, JsonValue]"

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})"
)
# Characters SQS refuses in a message body even when JSON could carry them raw.
_NOT_SQS_SAFE = re.compile("[\ud800-\udfff\ufffe\uffff]")


# -- timestamps -------------------------------------------------------------------------


def format_timestamp(value: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; milliseconds as JavaScript writes them, unless the value
    carries finer precision, which is kept rather than lost."""
    utc = value.astimezone(dt.timezone.utc)
    micro = utc.microsecond
    base = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if micro % 1000 == 0:
        return f"{base}.{micro // 1000:03d}Z"
    return f"{base}.{micro:06d}Z"


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp with an explicit offset into an aware UTC datetime.

    Raises ``ValueError`` for anything else, including a timestamp without an offset: a
    naive time is ambiguous across the Lambdas and servers that read it.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not an ISO 8601 timestamp with a timezone "
            "(expected e.g. 2026-11-28T10:00:00.000Z)"
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if offset in ("Z", "z"):
        tz = dt.timezone.utc
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    value = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
    )
    return value.astimezone(dt.timezone.utc)


def _aware(_instance: object, attribute: attrs.Attribute[dt.datetime], value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{attribute.name} must be timezone-aware (use datetime.now(timezone.utc))"
        )


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value  # left for the validator to refuse, with its clearer message
    return value.astimezone(dt.timezone.utc)


def _not_empty(_instance: object, attribute: attrs.Attribute[Any], value: Sized) -> None:
    if len(value) == 0:
        raise ValueError(f"{attribute.name} must not be empty")


def _group_id(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not is_sqs_id(value):
        raise ValueError(
            f"{attribute.name} {value!r} cannot be an SQS MessageGroupId: use 1-128 "
            "ASCII letters, digits or punctuation, without spaces"
        )


# -- value classes ----------------------------------------------------------------------


@attrs.frozen
class S3ObjectRef:
    """One object in S3. ``etag`` and ``version_id`` (wire: ``etag``, ``versionId``), when
    the bridge knows them, say which content of the key the job is for: they are part of
    the job's fingerprint, so a file re-posted with new content is processed again."""

    bucket: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    key: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    etag: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    version_id: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )


def _str_tuple(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class UserContext:
    """Who uploaded: the id, what they may do, and free-form metadata from the host."""

    user_id: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    permissions: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    metadata: Mapping[str, JsonValue] = attrs.field(factory=dict)


def _object_tuple(value: Sequence[S3ObjectRef]) -> tuple[S3ObjectRef, ...]:
    return tuple(value)


@attrs.frozen
class ProcessingJob:
    """A unit of work on the processing queue: one upload's objects and its template.

    ``extra`` holds keys this version does not know, so a job written by a newer bridge
    passes through an older processor unchanged.
    """

    upload_id: str = attrs.field(validator=[attrs.validators.instance_of(str), _group_id])
    template_id: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    objects: tuple[S3ObjectRef, ...] = attrs.field(converter=_object_tuple, validator=_not_empty)
    branch: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    fields: Mapping[str, JsonValue] = attrs.field(factory=dict)
    user: UserContext | None = None
    extra: Mapping[str, JsonValue] = attrs.field(factory=dict)

    @property
    def channel(self) -> str:
        """The progress channel of this job's upload."""
        return upload_channel(self.branch, self.upload_id)

    @classmethod
    def from_dict(cls, data: object) -> ProcessingJob:
        """Build a job from a decoded wire dictionary; raises :class:`JobFormatError`."""
        problems = list(_check_job(data))
        if problems:
            raise JobFormatError("processing job", problems)
        assert isinstance(data, dict)
        return _structure(data, cls, JobFormatError, "processing job")

    @classmethod
    def from_json(cls, text: str | bytes) -> ProcessingJob:
        """Parse a message body; raises :class:`JobFormatError` listing every problem."""
        return cls.from_dict(_loads(text, JobFormatError, "processing job"))

    def to_dict(self) -> JsonObject:
        """The wire dictionary (camelCase, absent optionals omitted)."""
        return _unstructure(self)

    def to_json(self) -> str:
        """The compact wire JSON, safe to send as an SQS message body."""
        return _dumps(self.to_dict())


class ProgressType(str, enum.Enum):
    """The kind of a progress event; the values are the wire strings."""

    START = "start"
    STEP_START = "step:start"
    PROGRESS = "progress"
    OUTPUT = "output"
    STEP_DONE = "step:done"
    DONE = "done"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        """Whether the upload ends with this event (``done`` or ``error``)."""
        return self in (ProgressType.DONE, ProgressType.ERROR)


def _percent(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be a number from 0 to 100, not {value!r}")


def _seq(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, not {value!r}")


_OPTIONAL_STR = attrs.validators.optional(attrs.validators.instance_of(str))


@attrs.frozen
class ProgressEvent:
    """One progress message on the progress queue.

    ``seq`` increases per upload and makes the event's deduplication id; ``extra`` carries
    keys a template published that have no field of their own (``ctx.publish(type, **data)``).
    """

    channel: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    type: ProgressType = attrs.field(converter=ProgressType)
    upload_id: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    branch: str = attrs.field(validator=[attrs.validators.instance_of(str), _not_empty])
    timestamp: dt.datetime = attrs.field(converter=_utc, validator=_aware)
    seq: int | None = attrs.field(default=None, validator=_seq)
    step: str | None = attrs.field(default=None, validator=_OPTIONAL_STR)
    key: str | None = attrs.field(default=None, validator=_OPTIONAL_STR)
    message: str | None = attrs.field(default=None, validator=_OPTIONAL_STR)
    name: str | None = attrs.field(default=None, validator=_OPTIONAL_STR)
    bucket: str | None = attrs.field(default=None, validator=_OPTIONAL_STR)
    template_id: str | None = attrs.field(default=None, validator=_OPTIONAL_STR)
    percent: float | None = attrs.field(default=None, validator=_percent)
    extra: Mapping[str, JsonValue] = attrs.field(factory=dict)

    @classmethod
    def create(
        cls,
        type: ProgressType | str,
        *,
        upload_id: str,
        branch: str,
        timestamp: dt.datetime | None = None,
        **optional: Any,
    ) -> ProgressEvent:
        """An event for an upload, with its channel filled in and the time now (UTC)."""
        return cls(
            channel=upload_channel(branch, upload_id),
            type=ProgressType(type),
            upload_id=upload_id,
            branch=branch,
            timestamp=timestamp or dt.datetime.now(dt.timezone.utc),
            **optional,
        )

    @property
    def event_id(self) -> str | None:
        """``{uploadId}:{seq}``: the event's id on the wire and in SSE, once it has a seq."""
        return None if self.seq is None else f"{self.upload_id}:{self.seq}"

    @classmethod
    def from_dict(cls, data: object) -> ProgressEvent:
        """Build an event from a decoded wire dictionary; raises :class:`EventFormatError`."""
        problems = list(_check_event(data))
        if problems:
            raise EventFormatError("progress event", problems)
        assert isinstance(data, dict)
        return _structure(data, cls, EventFormatError, "progress event")

    @classmethod
    def from_json(cls, text: str | bytes) -> ProgressEvent:
        """Parse a message body; raises :class:`EventFormatError` listing every problem."""
        return cls.from_dict(_loads(text, EventFormatError, "progress event"))

    def to_dict(self) -> JsonObject:
        """The wire dictionary (camelCase, absent optionals omitted)."""
        return _unstructure(self)

    def to_json(self) -> str:
        """The compact wire JSON, safe to send as an SQS message body."""
        return _dumps(self.to_dict())


# -- the converter: configured here, once -----------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _passthrough(value: Any, _type: Any) -> Any:
    # Free-form JSON (fields, metadata, extra, percent) was checked before structuring.
    return value


_FREE_FORM = {"fields", "metadata", "extra", "percent"}
_EXTRA = "extra"

T = TypeVar("T")


def _make_converter() -> cattrs.Converter:
    # omit_if_default: absent optionals are left out of the JSON, never written as null.
    conv = cattrs.Converter(omit_if_default=True)
    conv.register_unstructure_hook(dt.datetime, format_timestamp)
    conv.register_unstructure_hook(ProgressType, lambda value: value.value)
    conv.register_structure_hook(dt.datetime, lambda value, _: parse_timestamp(value))

    def unstructure_factory(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        names = {a.name for a in attrs.fields(cls)}
        overrides = {n: override(rename=_camel(n), omit=n == _EXTRA) for n in names}
        # mypy cannot tell the per-attribute overrides from cattrs' own keyword flags.
        base = make_dict_unstructure_fn(
            cls,
            conv,
            _cattrs_omit_if_default=True,
            **overrides,  # type: ignore[arg-type]
        )
        if _EXTRA not in names:
            return base

        def unstructure(obj: Any) -> dict[str, Any]:
            out = base(obj)
            for key, value in obj.extra.items():
                out.setdefault(key, value)
            return out

        return unstructure

    def structure_factory(cls: type[Any]) -> Callable[[Mapping[str, Any], Any], Any]:
        names = {a.name for a in attrs.fields(cls)}
        overrides = {
            n: override(
                rename=n if n == _EXTRA else _camel(n),
                struct_hook=_passthrough if n in _FREE_FORM else None,
            )
            for n in names
        }
        base = make_dict_structure_fn(cls, conv, **overrides)  # type: ignore[arg-type]
        wire_names = {_camel(n) for n in names if n != _EXTRA}

        def structure(data: Mapping[str, Any], _type: Any) -> Any:
            # null means absent for optional keys: JavaScript senders write both.
            known = {k: v for k, v in data.items() if k in wire_names and v is not None}
            if _EXTRA in names:
                known[_EXTRA] = {k: v for k, v in data.items() if k not in wire_names}
            return base(known, cls)

        return structure

    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    conv.register_structure_hook_factory(attrs.has, structure_factory)
    return conv


converter: cattrs.Converter = _make_converter()
"""The one converter for transflow's wire classes (camelCase keys, omitted defaults)."""


def _unstructure(obj: object) -> JsonObject:
    result: JsonObject = converter.unstructure(obj)
    return result


def _structure(data: Mapping[str, Any], cls: type[T], error: type[JobFormatError], what: str) -> T:
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        # The checks above should have caught it; never let a cattrs error escape.
        raise error(what, [str(exc)]) from exc


def _loads(text: str | bytes, error: type[JobFormatError], what: str) -> object:
    if not isinstance(text, str | bytes | bytearray):
        raise error(what, [f"expected a JSON string or bytes, got {type(text).__name__}"])
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(what, [f"not valid JSON ({exc})"]) from exc
    except RecursionError as exc:
        raise error(what, ["JSON nested too deeply"]) from exc


def _dumps(data: JsonObject) -> str:
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        # fields/metadata/extra are free-form in Python; only JSON values can travel.
        raise JobFormatError(
            "message", [f"a value cannot be written as JSON ({exc}); use JSON types only"]
        ) from exc
    # Raw non-ASCII is smaller on the wire, but SQS refuses lone surrogates and U+FFFE/FFFF.
    return _NOT_SQS_SAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# -- checking raw input: every problem, with its path -------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _check_str(data: Mapping[str, Any], key: str, path: str, *, required: bool) -> Iterator[str]:
    value = data.get(key)
    where = f"{path}{key}"
    if value is None:
        if required:
            yield f"{where}: required"
    elif not isinstance(value, str):
        yield f"{where}: must be a string, not {_type_name(value)}"
    elif required and not value:
        yield f"{where}: must not be empty"


def _check_object(data: Mapping[str, Any], key: str, path: str) -> Iterator[str]:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        yield f"{path}{key}: must be an object, not {_type_name(value)}"


def _check_job(data: object) -> Iterator[str]:
    if not isinstance(data, dict):
        yield f"(root): must be a JSON object, not {_type_name(data)}"
        return
    yield from _check_str(data, "uploadId", "", required=True)
    upload_id = data.get("uploadId")
    if isinstance(upload_id, str) and upload_id and not is_sqs_id(upload_id):
        yield (
            "uploadId: must be 1-128 ASCII letters, digits or punctuation without spaces "
            "(it is the SQS MessageGroupId)"
        )
    yield from _check_str(data, "templateId", "", required=True)
    yield from _check_str(data, "branch", "", required=True)
    objects = data.get("objects")
    if objects is None:
        yield "objects: required"
    elif not isinstance(objects, list):
        yield f"objects: must be an array, not {_type_name(objects)}"
    elif not objects:
        yield "objects: must not be empty (a job needs at least one S3 object)"
    else:
        for index, item in enumerate(objects):
            path = f"objects[{index}]"
            if not isinstance(item, dict):
                yield f"{path}: must be an object, not {_type_name(item)}"
                continue
            yield from _check_str(item, "bucket", f"{path}.", required=True)
            yield from _check_str(item, "key", f"{path}.", required=True)
    yield from _check_object(data, "fields", "")
    yield from _check_user(data.get("user"))


def _check_user(user: object) -> Iterator[str]:
    if user is None:
        return
    if not isinstance(user, dict):
        yield f"user: must be an object, not {_type_name(user)}"
        return
    yield from _check_str(user, "userId", "user.", required=True)
    permissions = user.get("permissions")
    if permissions is not None and not isinstance(permissions, list):
        yield f"user.permissions: must be an array, not {_type_name(permissions)}"
    elif permissions is not None:
        for index, item in enumerate(permissions):
            if not isinstance(item, str):
                yield f"user.permissions[{index}]: must be a string, not {_type_name(item)}"
    yield from _check_object(user, "metadata", "user.")


_EVENT_STRINGS = ("step", "key", "message", "name", "bucket", "templateId")


def _check_event(data: object) -> Iterator[str]:
    if not isinstance(data, dict):
        yield f"(root): must be a JSON object, not {_type_name(data)}"
        return
    for key in ("channel", "uploadId", "branch"):
        yield from _check_str(data, key, "", required=True)
    kind = data.get("type")
    allowed = ", ".join(t.value for t in ProgressType)
    if kind is None:
        yield f"type: required (one of {allowed})"
    elif kind not in {t.value for t in ProgressType}:
        yield f"type: {kind!r} is not one of {allowed}"
    stamp = data.get("timestamp")
    if stamp is None:
        yield "timestamp: required"
    elif not isinstance(stamp, str):
        yield f"timestamp: must be a string, not {_type_name(stamp)}"
    else:
        try:
            parse_timestamp(stamp)
        except ValueError as exc:
            yield f"timestamp: {exc}"
    seq = data.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        yield f"seq: must be a non-negative integer, not {seq!r}"
    percent = data.get("percent")
    if percent is not None and (
        isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100
    ):
        yield f"percent: must be a number from 0 to 100, not {percent!r}"
    for key in _EVENT_STRINGS:
        yield from _check_str(data, key, "", required=False)
