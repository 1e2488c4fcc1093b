"""Hypothesis: arbitrary valid jobs and events survive the wire; arbitrary junk is refused
with a typed error, never a bare exception."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transflow import (
    EventFormatError,
    JobFormatError,
    ProcessingJob,
    ProgressEvent,
    ProgressType,
    S3ObjectRef,
    UserContext,
)
from transflow._wire.limits import SQS_ID, is_sqs_id
from transflow._wire.model import JsonValue

text = st.text(min_size=1, max_size=40)
group_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
field_maps = st.dictionaries(st.text(max_size=20), json_values, max_size=6) | st.just(
    {"big": "x" * 100_000}
)
objects = st.builds(S3ObjectRef, bucket=text, key=st.text(min_size=1, max_size=300))
users = st.builds(
    UserContext,
    user_id=text,
    permissions=st.lists(st.text(max_size=10), max_size=3),
    metadata=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)
jobs = st.builds(
    ProcessingJob,
    upload_id=group_ids,
    template_id=text,
    objects=st.lists(objects, min_size=1, max_size=5),
    branch=text,
    fields=field_maps,
    user=st.none() | users,
)
timestamps = st.datetimes(
    min_value=dt.datetime(1970, 1, 2),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-7))]),
)
optional_text = st.none() | st.text(max_size=30)
events = st.builds(
    ProgressEvent,
    channel=text,
    type=st.sampled_from(list(ProgressType)),
    upload_id=group_ids,
    branch=text,
    timestamp=timestamps,
    seq=st.none() | st.integers(min_value=0, max_value=2**53 - 1),
    step=optional_text,
    key=optional_text,
    message=optional_text,
    name=optional_text,
    bucket=optional_text,
    template_id=optional_text,
    percent=st.none() | st.integers(0, 100) | st.floats(0, 100),
)


@settings(max_examples=150)
@given(jobs)
def test_any_valid_job_round_trips(job: ProcessingJob) -> None:
    assert ProcessingJob.from_json(job.to_json()) == job
    assert ProcessingJob.from_json(job.to_json().encode("utf-8")) == job


@settings(max_examples=150)
@given(events)
def test_any_valid_event_round_trips(event: ProgressEvent) -> None:
    again = ProgressEvent.from_json(event.to_json())
    assert again == event
    assert again.timestamp.tzinfo == dt.timezone.utc


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["uploadId", "templateId", "objects", "branch", "fields", "user", "other"]),
        json_values,
    )
)
def test_any_json_object_is_a_job_or_a_job_format_error(data: dict[str, Any]) -> None:
    try:
        job = ProcessingJob.from_json(json.dumps(data))
    except JobFormatError as exc:
        problems = exc.problems
    else:
        assert job.objects
        return
    assert problems
    assert all(isinstance(p, str) and ": " in p for p in problems)


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_are_an_event_or_a_typed_error(body: bytes | str) -> None:
    try:
        ProgressEvent.from_json(body)
    except JobFormatError as exc:
        problems = exc.problems
    else:
        return
    assert problems


def test_values_json_cannot_carry_are_a_typed_error_not_a_crash() -> None:
    job = ProcessingJob(
        upload_id="u",
        template_id="t",
        objects=[S3ObjectRef("b", "k")],
        branch="main",
        fields={"ratio": float("inf"), "when": object()},  # type: ignore[dict-item]
    )
    with pytest.raises(JobFormatError, match="cannot be written as JSON"):
        job.to_json()


# -- any JSON at all: a typed error, never ValueError or RecursionError ------------------

WIRE_KEYS = [
    "uploadId",
    "templateId",
    "objects",
    "branch",
    "fields",
    "user",
    "userId",
    "permissions",
    "metadata",
    "bucket",
    "key",
    "channel",
    "type",
    "timestamp",
    "seq",
    "percent",
    "step",
]
any_json: st.SearchStrategy[JsonValue] = st.recursive(
    json_scalars | st.sampled_from(["start", "done", "2026-11-28T10:00:00Z", "u-1"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(WIRE_KEYS) | st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=20,
)
PARSERS = [ProcessingJob, ProgressEvent]


def parses_or_says_why(cls: type[ProcessingJob | ProgressEvent], body: object) -> None:
    error: JobFormatError | None = None
    try:
        parsed = cls.from_json(body) if isinstance(body, str | bytes) else cls.from_dict(body)
    except JobFormatError as exc:
        error = exc
    if error is None:
        assert isinstance(parsed, cls)
        assert cls.from_json(parsed.to_json()) == parsed
        return
    assert error.problems
    assert all(isinstance(p, str) and p for p in error.problems)
    assert cls is ProcessingJob or isinstance(error, EventFormatError)


@settings(max_examples=150)
@given(st.sampled_from(PARSERS), any_json)
def test_any_json_document_is_parsed_or_refused_with_a_typed_error(
    cls: type[ProcessingJob | ProgressEvent], document: JsonValue
) -> None:
    parses_or_says_why(cls, json.dumps(document))
    parses_or_says_why(cls, document)


@settings(max_examples=150)
@given(st.sampled_from(PARSERS), st.binary(max_size=300) | st.text(max_size=300))
def test_any_bytes_or_text_are_parsed_or_refused_with_a_typed_error(
    cls: type[ProcessingJob | ProgressEvent], body: bytes | str
) -> None:
    parses_or_says_why(cls, body)


@settings(max_examples=100)
@given(
    st.sampled_from(PARSERS),
    st.dictionaries(st.sampled_from(WIRE_KEYS), any_json, min_size=3),
    st.sampled_from(["objects", "user", "fields", "seq", "percent", "timestamp"]),
    st.sampled_from([{"a": [1]}, [{"bucket": 3}], 2**64, -1, "", "not a time", 1.5]),
)
def test_a_wrong_value_is_reported_under_its_wire_key(
    cls: type[ProcessingJob | ProgressEvent], data: dict[str, Any], key: str, value: Any
) -> None:
    parses_or_says_why(cls, {**data, key: value})


HUGE = "1" * 5_000
DEEP = 100_000


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (HUGE, "a number has more than"),
        ('{"uploadId": ' + HUGE + "}", "a number has more than"),
        ('{"fields": {"n": -' + HUGE + "}}", "a number has more than"),
        ("[" * DEEP + "]" * DEEP, "JSON nested too deeply"),
        ('{"a":' * DEEP + "1" + "}" * DEEP, "JSON nested too deeply"),
        ('{"percent": NaN}', "NaN is not JSON"),
        ('{"fields": {"x": Infinity}}', "Infinity is not JSON"),
        ('{"seq": -Infinity}', "-Infinity is not JSON"),
        ("1", "(root): must be a JSON object, not a number"),
        ('"\\ud800"', "(root): must be a JSON object, not a string"),
        ("true", "(root): must be a JSON object, not a boolean"),
        ("", "not valid JSON"),
        ("\ufeff{}", "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
    ],
)
@pytest.mark.parametrize("cls", PARSERS)
def test_unreasonable_json_is_a_typed_error(
    cls: type[ProcessingJob | ProgressEvent], body: str | bytes, problem: str
) -> None:
    with pytest.raises(JobFormatError) as caught:
        cls.from_json(body)
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_a_lone_surrogate_in_a_value_parses_and_is_escaped_for_sqs() -> None:
    body = json.dumps(
        {
            "uploadId": "u",
            "templateId": "t\ud800",
            "branch": "main",
            "objects": [{"bucket": "b", "key": "k\udfff"}],
        }
    )
    job = ProcessingJob.from_json(body)
    assert job.template_id == "t\ud800"
    assert "\ud800" not in job.to_json()
    assert ProcessingJob.from_json(job.to_json()) == job
    with pytest.raises(JobFormatError, match="uploadId: must be 1-128 ASCII"):
        ProcessingJob.from_json(body.replace('"u"', '"\\ud800"'))
    # json.loads decodes bytes with surrogatepass: an encoded lone surrogate reads as one.
    raw = body.replace('"u"', '"\ud800"').encode("utf-8", "surrogatepass")
    with pytest.raises(JobFormatError, match="uploadId: must be 1-128 ASCII"):
        ProcessingJob.from_json(raw)


def test_nesting_that_json_reads_but_cannot_write_back_is_a_typed_error() -> None:
    depth = 900
    fields = "[" * depth + "]" * depth
    body = (
        '{"uploadId":"u","templateId":"t","branch":"m","objects":[{"bucket":"b","key":"k"}],'
        f'"fields":{{"deep":{fields}}}}}'
    )
    job = ProcessingJob.from_json(body)
    try:
        again = ProcessingJob.from_json(job.to_json())
    except JobFormatError:
        return
    assert again == job


@given(
    st.text(max_size=140)
    | group_ids
    | st.sampled_from(["", " ", "a b", "\x7f", "é", "a\n", "a" * 128, "a" * 129])
)
def test_is_sqs_id_says_what_the_sqs_id_pattern_says(value: str) -> None:
    # is_sqs_id checks the pattern without compiling it (issue 22's cold start).
    assert is_sqs_id(value) is (re.fullmatch(SQS_ID, value) is not None)
