"""The wire format: processing jobs and progress events, and their JSON.

Python names are snake_case; the JSON is camelCase exactly as the architecture spec writes it.
Every class here is a frozen, slotted attrs class; one cattrs converter (:data:`converter`)
turns them into wire dictionaries and back. Parsing checks the whole input first and reports
every problem with its path, so a sender fixes a message in one round trip.

Longer than 500 lines on purpose: the classes, their field rules and the one converter
(with the hooks that parse every problem with its path) are together the wire format; a class
read apart from the rules and hooks that parse it says half of it.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs

from transflow._wire.channels import upload_channel
from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.jsontext import JsonTextError, parse_json, show, type_name
from transflow._wire.limits import is_sqs_id
from transflow.errors import EventFormatError, JobFormatError

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "MAX_SEQ",
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

MAX_SEQ = 2**53 - 1
"""The largest ``seq`` an event may carry: what JavaScript reads exactly, and far above what a
publisher makes (milliseconds since 1970 times 1,000). A larger one can only be forged, and
would make the hub drop every later event of its upload as already seen."""
T = TypeVar("T")

# Compiled by re on first use (a handler may never parse a timestamp).
_TIMESTAMP = (
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})"
)
# Characters SQS refuses in a message body even when JSON could carry them raw; compiled by
# re on first use: ASCII text (most messages) cannot hold them.
_NOT_SQS_SAFE = "[\ud800-\udfff\ufffe\uffff]"


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
    match = re.fullmatch(_TIMESTAMP, text.strip())
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


class FieldProblem(ValueError):
    """A value broke a rule of its field: the one exception every rule below raises.

    ``problems`` are ``(sub-path, text)`` pairs (the sub-path is empty, or ``[2]`` for one
    item of an array). Building a class in Python shows them with the attribute's name;
    parsing JSON shows them with the wire path (``objects[2].key: must not be empty``).
    """

    def __init__(self, problems: Sequence[tuple[str, str]], name: str = "") -> None:
        self.problems = tuple(problems)
        super().__init__(
            "; ".join(f"{name}{sub}: {text}" if name or sub else text for sub, text in problems)
        )

    @classmethod
    def one(cls, text: str) -> FieldProblem:
        return cls([("", text)])


_Check: TypeAlias = Callable[[Any], None]


def _rule(*checks: _Check) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator from checks, applied in order: the first problem is reported."""

    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        try:
            for check in checks:
                check(value)
        except FieldProblem as exc:
            raise FieldProblem(exc.problems, attribute.name) from None

    return validate


def _optional(*checks: _Check) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    inner = _rule(*checks)

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            inner(instance, attribute, value)

    return validate


def _string(value: object) -> None:
    if not isinstance(value, str):
        raise FieldProblem.one(f"must be a string, not {type_name(value)}")


_TEXT = _optional(_string)


def _not_empty(value: Sized) -> None:
    if len(value) == 0:
        raise FieldProblem.one("must not be empty")


def _some_objects(value: Sized) -> None:
    if len(value) == 0:
        raise FieldProblem.one("must not be empty (a job needs at least one S3 object)")


def _group_id(value: str) -> None:
    if not is_sqs_id(value):
        raise FieldProblem.one(
            "must be 1-128 ASCII letters, digits or punctuation without spaces "
            "(it is the SQS MessageGroupId)"
        )


def _json_object(value: object) -> None:
    if not isinstance(value, Mapping):
        raise FieldProblem.one(f"must be an object, not {type_name(value)}")


def _strings(value: Sequence[object]) -> None:
    bad = [
        (f"[{index}]", f"must be a string, not {type_name(item)}")
        for index, item in enumerate(value)
        if not isinstance(item, str)
    ]
    if bad:
        raise FieldProblem(bad)


def _percent(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise FieldProblem.one(f"must be a number from 0 to 100, not {show(value)}")


def _seq(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise FieldProblem.one(f"must be a non-negative integer below 2**53, not {show(value)}")


def _aware(value: dt.datetime) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise FieldProblem.one("must be timezone-aware (use datetime.now(timezone.utc))")


def _is_array(value: object) -> bool:
    # A string or an object is not an array: iterating one would silently make an array of
    # its characters or keys.
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | bytearray | Mapping)


def _as_tuple(value: Any) -> Any:
    """Converter of array fields: any array becomes a tuple; the validator refuses the rest."""
    return tuple(value) if _is_array(value) else value


def _array(value: object) -> None:
    if not isinstance(value, tuple):
        raise FieldProblem.one(f"must be an array, not {type_name(value)}")


def _utc(value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        return value  # left for the validator to refuse, with its clearer message
    return value.astimezone(dt.timezone.utc)


# -- value classes ----------------------------------------------------------------------


@attrs.frozen
class S3ObjectRef:
    """One object in S3. ``etag`` and ``version_id`` (wire: ``etag``, ``versionId``), when
    the bridge knows them, say which content of the key the job is for: they are part of
    the job's fingerprint, so a file re-posted with new content is processed again."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    bucket: str = attrs.field(validator=_rule(_string, _not_empty))
    key: str = attrs.field(validator=_rule(_string, _not_empty))
    etag: str | None = attrs.field(default=None, validator=_TEXT)
    version_id: str | None = attrs.field(default=None, validator=_TEXT)


@attrs.frozen
class UserContext:
    """Who uploaded: the id, what they may do, and free-form metadata from the host."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    user_id: str = attrs.field(validator=_rule(_string, _not_empty))
    permissions: tuple[str, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_rule(_array, _strings)
    )
    metadata: Mapping[str, JsonValue] = attrs.field(factory=dict, validator=_rule(_json_object))


@attrs.frozen
class ProcessingJob:
    """A unit of work on the processing queue: one upload's objects and its template.

    ``traceparent`` and ``tracestate`` (W3C Trace Context) carry the upload's trace, as the
    bridge's span continues it; a malformed one is ignored by the processor, never fatal.
    ``extra`` holds keys this version does not know, so a job written by a newer bridge
    passes through an older processor unchanged.
    """

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    upload_id: str = attrs.field(validator=_rule(_string, _group_id))
    template_id: str = attrs.field(validator=_rule(_string, _not_empty))
    objects: tuple[S3ObjectRef, ...] = attrs.field(
        converter=_as_tuple, validator=_rule(_array, _some_objects)
    )
    branch: str = attrs.field(validator=_rule(_string, _not_empty))
    fields: Mapping[str, JsonValue] = attrs.field(factory=dict, validator=_rule(_json_object))
    user: UserContext | None = None
    traceparent: str | None = attrs.field(default=None, validator=_TEXT)
    tracestate: str | None = attrs.field(default=None, validator=_TEXT)
    extra: Mapping[str, JsonValue] = attrs.field(factory=dict, validator=_rule(_json_object))

    @property
    def channel(self) -> str:
        """The progress channel of this job's upload."""
        return upload_channel(self.branch, self.upload_id)

    @classmethod
    def from_dict(cls, data: object) -> ProcessingJob:
        """Build a job from a decoded wire dictionary; raises :class:`JobFormatError`."""
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
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        """Whether the upload ends with this event (``done``, ``error`` or ``cancelled``)."""
        return self in (ProgressType.DONE, ProgressType.ERROR, ProgressType.CANCELLED)


_ALLOWED_TYPES = ", ".join(t.value for t in ProgressType)


def _as_progress_type(value: Any) -> Any:
    """Converter of ``type``: the wire string becomes the enum; the validator refuses the rest."""
    try:
        return ProgressType(value)
    except ValueError:
        return value


def _progress_type(value: object) -> None:
    if not isinstance(value, ProgressType):
        raise FieldProblem.one(f"{show(value)} is not one of {_ALLOWED_TYPES}")


@attrs.frozen
class ProgressEvent:
    """One progress message on the progress queue.

    ``seq`` increases per upload and makes the event's deduplication id; ``extra`` carries
    keys a template published that have no field of their own (``ctx.publish(type, **data)``);
    ``traceparent`` is the W3C trace context of the job or step that sent the event.
    """

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    channel: str = attrs.field(validator=_rule(_string, _not_empty))
    type: ProgressType = attrs.field(converter=_as_progress_type, validator=_rule(_progress_type))
    upload_id: str = attrs.field(validator=_rule(_string, _group_id))
    branch: str = attrs.field(validator=_rule(_string, _not_empty))
    timestamp: dt.datetime = attrs.field(converter=_utc, validator=_rule(_aware))
    seq: int | None = attrs.field(default=None, validator=_optional(_seq))
    step: str | None = attrs.field(default=None, validator=_TEXT)
    key: str | None = attrs.field(default=None, validator=_TEXT)
    message: str | None = attrs.field(default=None, validator=_TEXT)
    name: str | None = attrs.field(default=None, validator=_TEXT)
    bucket: str | None = attrs.field(default=None, validator=_TEXT)
    template_id: str | None = attrs.field(default=None, validator=_TEXT)
    percent: float | None = attrs.field(default=None, validator=_optional(_percent))
    traceparent: str | None = attrs.field(default=None, validator=_TEXT)
    extra: Mapping[str, JsonValue] = attrs.field(factory=dict, validator=_rule(_json_object))

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
            type=type,
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
        return _structure(data, cls, EventFormatError, "progress event")

    @classmethod
    def from_json(cls, text: str | bytes) -> ProgressEvent:
        """Parse a message body; raises :class:`EventFormatError` listing every problem."""
        return cls.from_dict(_loads(text, EventFormatError, "progress event"))

    @classmethod
    def all_from_json(cls, text: str | bytes) -> list[ProgressEvent]:
        """The events of one progress message body, in order: a packed message's (a JSON
        array of one upload's events, docs/wire-format.md), or the one event it is. For a
        consumer of the progress queue other than the hub. Raises
        :class:`EventFormatError` for a malformed body or event."""
        # Packs are read by consumers only: kept off the handlers' import path.
        from transflow._wire.packs import packed_items  # noqa: PLC0415

        body = text.decode("utf-8") if isinstance(text, bytes) else text
        items = packed_items(body)
        if items is None:
            return [cls.from_json(body)]
        return [cls.from_dict(item) for item in items]

    def to_dict(self) -> JsonObject:
        """The wire dictionary (camelCase, absent optionals omitted)."""
        return _unstructure(self)

    def to_json(self) -> str:
        """The compact wire JSON, safe to send as an SQS message body."""
        return _dumps(self.to_dict())


# -- the converter: configured here, once -----------------------------------------------
#
# Structuring runs each field's attrs converter and validator as it goes, so cattrs collects
# every broken rule with its place (detailed validation), and the rules above are the only
# ones. Scalars pass through untouched: their type is a rule too, checked by the validator.


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _passthrough(value: Any, _type: Any) -> Any:
    return value


def _wire_timestamp(value: object, _type: Any) -> dt.datetime:
    _string(value)
    try:
        return parse_timestamp(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise FieldProblem.one(str(exc)) from None


# Free-form JSON: any object, checked as one by its validator; never structured.
_FREE_FORM = {"fields", "metadata", "extra"}
_EXTRA = "extra"


_SCALARS = (str, int, float, bool, ProgressType, type(None))


def _is_scalar(type_: Any) -> bool:
    """Whether a field holds a scalar (or an optional one), which structures as itself: its
    type is a rule of the field's validator. Decided per field rather than by registering
    hooks for ``str``, which cattrs would also apply to other ``str`` enums."""
    if type_ in _SCALARS:
        return True
    origin = typing.get_origin(type_)
    return origin in (typing.Union, types.UnionType) and all(
        a in _SCALARS for a in typing.get_args(type_)
    )


def _is_array_type(type_: Any) -> bool:
    args: tuple[Any, ...] = getattr(type_, "__args__", ())
    return getattr(type_, "__origin__", None) is tuple and len(args) == 2 and args[1] is ...


def _structure_array(conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """``tuple[X, ...]`` from a JSON array, every item's problems collected by index."""
    from cattrs.errors import IterableValidationError, IterableValidationNote  # noqa: PLC0415

    def structure(value: Any, type_: Any) -> Any:
        if not _is_array(value):
            return value  # the field's validator says what it is instead
        item_type = type_.__args__[0]
        hook = _passthrough if _is_scalar(item_type) else conv.get_structure_hook(item_type)
        out: list[Any] = []
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                out.append(hook(item, item_type))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring item @ index {index}", index, item_type)
                # cattrs reads the index from this note (add_note is Python 3.11+).
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {type_!r}", errors, type_)
        return tuple(out)

    return structure


def _unstructure_factory(conv: cattrs.Converter) -> Callable[[type[Any]], Any]:
    from cattrs.gen import make_dict_unstructure_fn, override  # noqa: PLC0415

    def factory(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        names = {a.name for a in attrs.fields(cls)}
        # Free-form JSON is copied, not walked: a value nested 900 deep would otherwise
        # exhaust the stack here instead of failing cleanly in json.dumps.
        overrides = {
            n: override(
                rename=_camel(n), omit=n == _EXTRA, unstruct_hook=dict if n in _FREE_FORM else None
            )
            for n in names
        }
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

    return factory


def _field_hook(conv: cattrs.Converter, field: attrs.Attribute[Any]) -> Callable[[Any, Any], Any]:
    """Structure one field, then apply its attrs converter and validator: the field's rules
    run here, where cattrs records which field broke them."""
    free = field.name in _FREE_FORM or _is_scalar(field.type)
    inner = _passthrough if free else conv.get_structure_hook(field.type)
    convert = field.converter
    validate = field.validator

    def structure(value: Any, _type: Any) -> Any:
        value = inner(value, field.type)
        if convert is not None:
            value = convert(value)  # type: ignore[operator] # plain functions, never attrs.Converter
        if validate is not None:
            validate(None, field, value)
        return value

    return structure


def _structure_factory(conv: cattrs.Converter) -> Callable[[type[Any]], Any]:
    from cattrs.gen import make_dict_structure_fn, override  # noqa: PLC0415

    def factory(cls: type[Any]) -> Callable[[Mapping[str, Any], Any], Any]:
        fields = attrs.fields(attrs.resolve_types(cls))
        names = {a.name for a in fields}
        overrides = {
            a.name: override(
                rename=a.name if a.name == _EXTRA else _camel(a.name),
                struct_hook=_field_hook(conv, a),
            )
            for a in fields
        }
        base = make_dict_structure_fn(cls, conv, **overrides)  # type: ignore[arg-type]
        wire_names = {_camel(n) for n in names if n != _EXTRA}

        def structure(data: Mapping[str, Any], _type: Any) -> Any:
            _json_object(data)
            # null means absent for optional keys: JavaScript senders write both.
            known = {k: v for k, v in data.items() if k in wire_names and v is not None}
            if _EXTRA in names:
                known[_EXTRA] = {k: v for k, v in data.items() if k not in wire_names}
            return base(known, cls)

        return structure

    return factory


def _make_converter() -> cattrs.Converter:
    import cattrs  # noqa: PLC0415 - see _converter

    # omit_if_default: absent optionals are left out of the JSON, never written as null.
    conv = cattrs.Converter(omit_if_default=True, detailed_validation=True)
    conv.register_unstructure_hook(dt.datetime, format_timestamp)
    conv.register_unstructure_hook(ProgressType, lambda value: value.value)
    conv.register_structure_hook(dt.datetime, _wire_timestamp)
    conv.register_structure_hook_func(_is_array_type, _structure_array(conv))
    conv.register_unstructure_hook_factory(attrs.has, _unstructure_factory(conv))
    conv.register_structure_hook_factory(attrs.has, _structure_factory(conv))
    return conv


# Made when first used: cattrs and the hooks cost a Lambda handler's cold start more than
# the classes themselves, and a bridge or processor that is only imported never needs them.
_made: list[cattrs.Converter] = []
_making = threading.Lock()


def _converter() -> cattrs.Converter:
    if not _made:
        with _making:
            if not _made:
                _made.append(_make_converter())
    return _made[0]


if TYPE_CHECKING:
    converter: cattrs.Converter
    """The one converter for transflow's wire classes (camelCase keys, omitted defaults),
    made on first use."""
else:

    def __getattr__(name: str) -> Any:
        if name == "converter":
            return _converter()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unstructure(obj: object) -> JsonObject:
    result: JsonObject = _converter().unstructure(obj)
    return result


# -- cattrs' structured errors as one message: every problem, with its path ---------------


def _note(exc: BaseException, kind: type[Any]) -> Any:
    return next((n for n in getattr(exc, "__notes__", ()) if isinstance(n, kind)), None)


def _required(type_: Any) -> str:
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return f"required (one of {', '.join(str(m.value) for m in type_)})"
    return "required"


def _problems(exc: BaseException, path: str) -> Iterator[tuple[str, str]]:
    import cattrs  # noqa: PLC0415 - loaded with the converter that raised
    from cattrs.errors import (  # noqa: PLC0415
        AttributeValidationNote,
        IterableValidationError,
        IterableValidationNote,
    )

    if isinstance(exc, cattrs.ClassValidationError):
        for sub in exc.exceptions:
            note = _note(sub, AttributeValidationNote)
            if note is None:
                yield from _problems(sub, path)
                continue
            name = note.name if note.name == _EXTRA else _camel(note.name)
            where = f"{path}.{name}" if path else name
            if isinstance(sub, KeyError):
                yield where, _required(note.type)
            else:
                yield from _problems(sub, where)
    elif isinstance(exc, IterableValidationError):
        for sub in exc.exceptions:
            note = _note(sub, IterableValidationNote)
            yield from _problems(sub, path if note is None else f"{path}[{note.index}]")
    elif isinstance(exc, FieldProblem):
        for sub, text in exc.problems:
            yield path + sub, text
    else:
        yield path, str(exc) or type(exc).__name__


def _structure(data: object, cls: type[T], error: type[JobFormatError], what: str) -> T:
    if not isinstance(data, dict):
        # The document itself, as opposed to a nested value: say JSON, it is what was sent.
        raise error(what, [f"(root): must be a JSON object, not {type_name(data)}"])
    conv = _converter()
    import cattrs  # noqa: PLC0415 - loaded by _converter

    try:
        return conv.structure(data, cls)
    except (cattrs.BaseValidationError, FieldProblem) as exc:
        problems = [f"{where or '(root)'}: {text}" for where, text in _problems(exc, "")]
        raise error(what, problems) from exc


def _loads(text: str | bytes, error: type[JobFormatError], what: str) -> object:
    try:
        return parse_json(text)
    except JsonTextError as exc:
        raise error(what, [str(exc)]) from exc


def _dumps(data: JsonObject) -> str:
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        # fields/metadata/extra are free-form in Python; only JSON values can travel.
        raise JobFormatError(
            "message", [f"a value cannot be written as JSON ({exc}); use JSON types only"]
        ) from exc
    # Raw non-ASCII is smaller on the wire, but SQS refuses lone surrogates and U+FFFE/FFFF.
    if text.isascii():
        return text
    return re.sub(_NOT_SQS_SAFE, lambda m: f"\\u{ord(m.group()):04x}", text)
