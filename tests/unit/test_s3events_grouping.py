"""Reading the three event shapes and grouping records into jobs: pure, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.vectors import load_vector
from transflow.ingest.grouping import (
    HeadedRecord,
    ListedObject,
    PlannedJob,
    branch_of_key,
    complete_upload,
    plan_jobs,
    standalone_upload_id,
)
from transflow.ingest.grouping import job_dedup_id as dedup_id
from transflow.ingest.metadata import UploadMetadata
from transflow.ingest.s3events import EventSource, S3Record, decode_key, parse_event


def test_direct_vector_keys_are_decoded() -> None:
    parsed = parse_event(load_vector("s3-event-direct.json"))
    assert parsed.source is EventSource.S3
    assert [r.key for r in parsed.records] == [
        "uploads/main/users/user123/upload-abc/my song.mp3",
        "uploads/main/users/user123/upload-abc/cover+art.png",
        "uploads/main/users/user999/upload-xyz/clip.wav",
    ]
    assert parsed.records[0].sequencer == "0055AED6DCD90281E5"
    assert not parsed.skipped
    assert not parsed.failed


def test_sqs_vector_skips_the_test_event() -> None:
    parsed = parse_event(load_vector("sqs-event-wrapping-s3.json"))
    assert parsed.source is EventSource.SQS
    assert [s.message_id for s in parsed.skipped] == ["2e1424d4-f796-459a-8184-9c92662be6da"]
    assert "s3:TestEvent" in parsed.skipped[0].reason
    assert [(r.key, r.message_id) for r in parsed.records] == [
        (
            "uploads/main/users/user123/upload-abc/my song.mp3",
            "059f36b4-87a3-44ab-83d2-661975830a7d",
        )
    ]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("my+song.mp3", "my song.mp3"),
        ("cover%2Bart.png", "cover+art.png"),
        ("uploads%2Fmain%2Fa.png", "uploads/main/a.png"),
        ("r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
    ],
)
def test_keys_decode_as_s3_encodes_them(raw: str, key: str) -> None:
    assert decode_key(raw) == key


def test_eventbridge_object_created() -> None:
    event = {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {
            "bucket": {"name": "uploads"},
            "object": {
                "key": "uploads/main/u1/a+b.png",
                "size": 5,
                "etag": "abc",
                "sequencer": "1",
            },
            "reason": "PostObject",
        },
    }
    parsed = parse_event(event)
    assert parsed.source is EventSource.EVENTBRIDGE
    (record,) = parsed.records
    assert (record.bucket, record.key, record.etag, record.sequencer) == (
        "uploads",
        "uploads/main/u1/a b.png",
        "abc",
        "1",
    )
    deleted = {**event, "detail-type": "Object Deleted"}
    assert parse_event(deleted).skipped
    assert not parse_event(deleted).records


def test_sns_wrapped_and_non_create_and_garbage_bodies() -> None:
    notification = load_vector("s3-event-direct.json")
    removed = {"Records": [{**notification["Records"][0], "eventName": "ObjectRemoved:Delete"}]}
    event = {
        "Records": [
            {
                "messageId": "m1",
                "body": json.dumps({"Type": "Notification", "Message": json.dumps(notification)}),
            },
            {"messageId": "m2", "body": json.dumps(removed)},
            {"messageId": "m3", "body": "not json"},
            {"messageId": "m4", "body": json.dumps({"hello": "world"})},
        ]
    }
    parsed = parse_event(event)
    assert {r.message_id for r in parsed.records} == {"m1"}
    assert len(parsed.records) == 3
    assert [s.message_id for s in parsed.skipped] == ["m2"]
    assert [f.message_id for f in parsed.failed] == ["m3", "m4"]


@pytest.mark.parametrize("event", [None, [], "x", {"foo": 1}, {"Records": [1]}])
def test_unreadable_events_are_failures_not_crashes(event: Any) -> None:
    parsed = parse_event(event)
    assert parsed.failed
    assert not parsed.records


# -- grouping -------------------------------------------------------------------------------


def record(key: str, *, seq: str = "1", ref: str | None = None, bucket: str = "b") -> S3Record:
    return S3Record(ref or key, bucket, key, "ObjectCreated:Post", 1, "etag", seq, None)


def headed(key: str, upload_id: str | None, count: int | None = None, **kw: Any) -> HeadedRecord:
    meta = UploadMetadata(template_id="t", upload_id=upload_id, file_count=count)
    return HeadedRecord(record(key, **kw), meta, "etag")


def test_per_event_grouping_by_upload() -> None:
    plan = plan_jobs(
        [
            headed("uploads/main/u1/b.png", "u1"),
            headed("uploads/main/u1/a.png", "u1"),
            headed("uploads/dev/u2/c.png", "u2"),
        ]
    )
    assert not plan.checks
    assert not plan.failed
    jobs = {p.job.upload_id: p.job for p in plan.jobs}
    assert [o.key for o in jobs["u1"].objects] == ["uploads/main/u1/a.png", "uploads/main/u1/b.png"]
    assert jobs["u2"].branch == "dev"


def test_dedup_id_ignores_order_and_tracks_versions() -> None:
    a = [("b", "k1", "s1"), ("b", "k2", "s2")]
    assert dedup_id("u", a) == dedup_id("u", list(reversed(a)))
    assert dedup_id("u", a) != dedup_id("u", [("b", "k1", "s1"), ("b", "k2", "s3")])
    assert dedup_id("u", a) != dedup_id("v", a)
    assert len(dedup_id("u", a)) == 64


def test_records_without_upload_id_are_jobs_of_their_own() -> None:
    plan = plan_jobs([headed("loose/a.png", None), headed("loose/b.png", None)])
    assert len(plan.jobs) == 2
    assert {p.job.upload_id for p in plan.jobs} == {
        standalone_upload_id("b", "loose/a.png"),
        standalone_upload_id("b", "loose/b.png"),
    }
    assert all(p.job.branch == "main" for p in plan.jobs)


def test_whole_upload_waits_for_its_last_file() -> None:
    plan = plan_jobs([headed("uploads/main/u1/a.png", "u1", 3)])
    (check,) = plan.checks
    assert (check.prefix, check.expected) == ("uploads/main/u1/", 3)
    two = [ListedObject("uploads/main/u1/a.png", "e1"), ListedObject("uploads/main/u1/b.png", "e2")]
    assert complete_upload(check, two) is None
    three = [*two, ListedObject("uploads/main/u1/c.png", "e3")]
    done = complete_upload(check, three)
    assert isinstance(done, PlannedJob)
    assert len(done.job.objects) == 3
    # Another file's invocation sees the same listing: the same deduplication id.
    other = plan_jobs([headed("uploads/main/u1/c.png", "u1", 3, seq="9")]).checks[0]
    again = complete_upload(other, list(reversed(three)))
    assert isinstance(again, PlannedJob)
    assert again.job_dedup_id == done.job_dedup_id


def test_branch_of_key() -> None:
    assert branch_of_key("uploads/feature-x/users/u/1/a.png") == "feature-x"
    assert branch_of_key("other/main/a.png") is None
    assert branch_of_key("uploads/") is None


metadata_strategy = st.builds(
    UploadMetadata,
    template_id=st.sampled_from(["t1", "t2"]),
    upload_id=st.one_of(st.none(), st.sampled_from(["u1", "u2", "bad id with spaces"])),
    file_count=st.one_of(st.none(), st.integers(1, 4)),
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["uploads/main/u1/", "uploads/main/u2/", "loose/"]),
            st.sampled_from(["a.png", "b.png", "c.png"]),
            metadata_strategy,
            st.sampled_from(["1", "2"]),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_every_record_lands_in_exactly_one_place(
    items: list[tuple[str, str, UploadMetadata, str]], whole: bool
) -> None:
    records = [
        HeadedRecord(record(folder + name, seq=seq, ref=f"r{i}"), meta, "e")
        for i, (folder, name, meta, seq) in enumerate(items)
    ]
    plan = plan_jobs(records, whole_uploads=whole)
    places: dict[str, int] = {}
    for planned in plan.jobs:
        for r in planned.records:
            places[r.ref] = places.get(r.ref, 0) + 1
        assert {o.key for o in planned.job.objects} == {r.key for r in planned.records}
    for check in plan.checks:
        for h in check.records:
            places[h.record.ref] = places.get(h.record.ref, 0) + 1
    for failure in plan.failed:
        places[failure.ref] = places.get(failure.ref, 0) + 1
    assert places == {f"r{i}": 1 for i in range(len(records))}
    # Bad upload ids never reach a job: they fail with a reason.
    assert all(p.job.upload_id != "bad id with spaces" for p in plan.jobs)
