"""Every vector in tests/data behaves as the wire format says."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs
import pytest

from tests.support.vectors import load_vector
from transflow import (
    EventFormatError,
    JobFormatError,
    ProcessingJob,
    ProgressEvent,
    ProgressType,
    S3ObjectRef,
    TransflowError,
    UserContext,
)
from transflow._wire.model import converter


def without_empty_containers(value: Any) -> Any:
    """The vectors may write an empty optional container (``metadata: {}``) we omit."""
    if isinstance(value, dict):
        return {k: without_empty_containers(v) for k, v in value.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [without_empty_containers(v) for v in value]
    return value


@pytest.mark.parametrize("name", ["job-seed.json", "job-full.json", "job-traced.json"])
def test_valid_jobs_round_trip_to_an_equal_json_object(name: str) -> None:
    wire = load_vector(name)
    job = ProcessingJob.from_json(json.dumps(wire))
    assert json.loads(job.to_json()) == without_empty_containers(wire)
    assert ProcessingJob.from_json(job.to_json()) == job


def test_job_fields_are_read_as_the_spec_names_them() -> None:
    job = ProcessingJob.from_dict(load_vector("job-full.json"))
    assert job.upload_id == "upload-def"
    assert job.template_id == "audio-processing"
    assert [o.key for o in job.objects] == [
        "uploads/feature-x/users/user-456/upload-def/a.wav",
        "uploads/feature-x/users/user-456/upload-def/b.wav",
    ]
    assert job.fields == {"slug": "intro", "previewStartTime": "12"}
    assert job.user is not None
    assert job.user.permissions == ("upload", "read")
    assert job.channel == "upload:feature-x:upload-def"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("job-invalid-missing-upload-id.json", "uploadId: required"),
        ("job-invalid-no-objects.json", "objects: must not be empty"),
    ],
)
def test_invalid_jobs_give_a_clear_error(name: str, problem: str) -> None:
    with pytest.raises(JobFormatError) as caught:
        ProcessingJob.from_json(json.dumps(load_vector(name)))
    assert any(p.startswith(problem) for p in caught.value.problems)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TransflowError)


def test_every_progress_example_round_trips() -> None:
    examples = load_vector("progress-examples.json")
    assert {e["type"] for e in examples} == {t.value for t in ProgressType}
    for wire in examples:
        event = ProgressEvent.from_json(json.dumps(wire))
        assert event.type.value == wire["type"]
        assert event.to_dict() == wire
        assert json.loads(event.to_json()) == wire


def test_the_fifo_vector_holds_two_good_jobs_and_one_malformed_body() -> None:
    records = load_vector("sqs-event-fifo-processing.json")["Records"]
    parsed = []
    for record in records:
        try:
            parsed.append(ProcessingJob.from_json(record["body"]).upload_id)
        except JobFormatError as exc:
            parsed.append(f"error: {exc.problems[0]}")
    assert parsed[:2] == ["upload-abc", "upload-def"]
    assert parsed[2].startswith("error: not valid JSON")


def test_every_problem_is_listed_with_its_path() -> None:
    body = {
        "templateId": 7,
        "objects": [{"bucket": "b"}, "x", {"bucket": "", "key": "k"}],
        "branch": "main",
        "fields": [],
        "user": {"permissions": "all", "metadata": 3},
    }
    with pytest.raises(JobFormatError) as caught:
        ProcessingJob.from_dict(body)
    assert caught.value.problems == (
        "uploadId: required",
        "templateId: must be a string, not a number",
        "objects[0].key: required",
        "objects[1]: must be an object, not a string",
        "objects[2].bucket: must not be empty",
        "fields: must be an object, not an array",
        "user.userId: required",
        "user.permissions: must be an array, not a string",
        "user.metadata: must be an object, not a number",
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[]", "(root): must be a JSON object, not an array"),
        ("null", "(root): must be a JSON object, not null"),
        ("[" * 100_000, "JSON nested too deeply"),
    ],
)
def test_what_is_not_a_json_object_is_a_job_format_error(body: str | bytes, problem: str) -> None:
    with pytest.raises(JobFormatError) as caught:
        ProcessingJob.from_json(body)
    assert caught.value.problems[0].startswith(problem)


def test_an_upload_id_must_be_usable_as_a_message_group_id() -> None:
    job = load_vector("job-seed.json")
    job["uploadId"] = "has a space"
    with pytest.raises(JobFormatError, match="MessageGroupId"):
        ProcessingJob.from_dict(job)
    job["uploadId"] = "x" * 129
    with pytest.raises(JobFormatError, match="MessageGroupId"):
        ProcessingJob.from_dict(job)


def test_unknown_keys_are_kept_and_written_back() -> None:
    wire = {**load_vector("job-seed.json"), "priority": 3, "trace": {"id": "abc"}}
    job = ProcessingJob.from_dict(wire)
    assert job.extra == {"priority": 3, "trace": {"id": "abc"}}
    assert json.loads(job.to_json()) == wire


def test_null_optionals_are_read_as_absent() -> None:
    wire = {**load_vector("job-seed.json"), "fields": None, "user": None}
    job = ProcessingJob.from_dict(wire)
    assert job.user is None
    assert "user" not in job.to_dict()
    assert "fields" not in job.to_dict()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": "finished"}, "type: 'finished' is not one of start, step:start"),
        ({"type": None}, "type: required"),
        ({"timestamp": "2026-11-28T10:00:00"}, "timestamp: "),
        ({"timestamp": "yesterday"}, "timestamp: "),
        ({"percent": 101}, "percent: must be a number from 0 to 100"),
        ({"percent": True}, "percent: must be a number from 0 to 100"),
        ({"seq": -1}, "seq: must be a non-negative integer"),
        ({"step": 3}, "step: must be a string, not a number"),
        ({"channel": ""}, "channel: must not be empty"),
    ],
)
def test_invalid_events_give_a_clear_error(change: dict[str, Any], problem: str) -> None:
    wire = {**load_vector("progress-examples.json")[2], **change}
    with pytest.raises(EventFormatError) as caught:
        ProgressEvent.from_dict(wire)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    assert isinstance(caught.value, JobFormatError)


def test_timestamps_are_utc_with_z_and_keep_their_precision() -> None:
    wire = {**load_vector("progress-examples.json")[0], "timestamp": "2026-11-28T12:30:00+02:30"}
    event = ProgressEvent.from_dict(wire)
    assert event.to_dict()["timestamp"] == "2026-11-28T10:00:00.000Z"
    wire["timestamp"] = "2026-11-28T10:00:00.123456Z"
    assert ProgressEvent.from_dict(wire).to_dict()["timestamp"] == "2026-11-28T10:00:00.123456Z"


def test_json_is_compact_and_safe_for_sqs() -> None:
    job = ProcessingJob.from_dict({**load_vector("job-seed.json"), "fields": {"t": "é\ufffe"}})
    text = job.to_json()
    assert ", " not in text
    assert "é" in text  # raw UTF-8 is smaller than \\u escapes
    assert "\ufffe" not in text  # SQS refuses U+FFFE in a body
    assert ProcessingJob.from_json(text) == job


def test_nested_problems_carry_their_full_path() -> None:
    body = {
        "uploadId": "u",
        "templateId": "t",
        "branch": "main",
        "objects": [{"bucket": "b", "key": "k"}, {"bucket": "b", "key": 5}, []],
        "user": {"userId": "", "permissions": ["read", None, 3]},
        "extraKey": {"kept": True},
    }
    with pytest.raises(JobFormatError) as caught:
        ProcessingJob.from_dict(body)
    assert caught.value.problems == (
        "objects[1].key: must be a string, not a number",
        "objects[2]: must be an object, not an array",
        "user.userId: must not be empty",
        "user.permissions[1]: must be a string, not null",
        "user.permissions[2]: must be a string, not a number",
    )


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: S3ObjectRef("b", ""), "key: must not be empty"),
        (lambda: UserContext("u", permissions="read"), "permissions: must be an array"),
        (
            lambda: UserContext("u", metadata=[]),  # type: ignore[arg-type]
            "metadata: must be an object, not an array",
        ),
        (
            lambda: ProcessingJob("a b", "t", [S3ObjectRef("b", "k")], "main"),
            "upload_id: must be 1-128 ASCII",
        ),
        (lambda: ProcessingJob("u", "t", [], "main"), "objects: must not be empty"),
        (
            lambda: ProgressEvent.create("finished", upload_id="u", branch="main"),
            "type: 'finished' is not one of start",
        ),
        (
            lambda: ProgressEvent.create("progress", upload_id="u", branch="main", percent=200),
            "percent: must be a number from 0 to 100, not 200",
        ),
    ],
)
def test_building_in_python_applies_the_same_rules(build: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build()


class Colour(str, enum.Enum):
    RED = "red"


@attrs.frozen
class Paint:
    colour: Colour
    name: str = "x"


def test_the_converter_still_structures_other_enums_of_str() -> None:
    assert converter.structure({"colour": "red", "name": None}, Paint) == Paint(Colour.RED)
