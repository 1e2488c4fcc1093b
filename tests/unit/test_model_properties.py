"""Hypothesis: arbitrary valid jobs and events survive the wire; arbitrary junk is refused
with a typed error, never a bare exception."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transflow import (
    JobFormatError,
    ProcessingJob,
    ProgressEvent,
    ProgressType,
    S3ObjectRef,
    UserContext,
)
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
    upload_id=text,
    branch=text,
    timestamp=timestamps,
    seq=st.none() | st.integers(min_value=0, max_value=2**53),
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
