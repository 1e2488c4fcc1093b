"""The pure decisions of provisioning, redrive and health: no network."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import ProgressEvent, ProvisionError, TransflowConfig
from transflow._wire.messages import ReceivedMessage
from transflow.ops.announce import announcement
from transflow.ops.dlq import FailedJob, reason_from_status
from transflow.ops.health import HealthThresholds, QueueDepth, QueueStats, health
from transflow.ops.queue_spec import (
    check_fifo,
    desired_attributes,
    diff_attributes,
    visibility_warning,
)
from transflow.ops.redrive import plan_resend, redrive_dedup_id

DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:shop-main-dlq.fifo"


def test_policies_compare_by_meaning_not_by_spelling() -> None:
    desired = desired_attributes(
        TransflowConfig(project="shop"), dlq_arn=DLQ_ARN, processing_arn="arn:p"
    )["processing"]
    actual = dict(desired)
    actual["RedrivePolicy"] = json.dumps({"maxReceiveCount": "3", "deadLetterTargetArn": DLQ_ARN})
    assert diff_attributes("q", desired, actual) == ()
    actual["RedrivePolicy"] = json.dumps({"maxReceiveCount": 5, "deadLetterTargetArn": DLQ_ARN})
    (change,) = diff_attributes("q", desired, actual)
    assert change.attribute == "RedrivePolicy"
    del actual["VisibilityTimeout"]
    assert {c.attribute for c in diff_attributes("q", desired, actual)} == {
        "RedrivePolicy",
        "VisibilityTimeout",
    }


def test_fifo_cannot_be_changed_so_it_is_an_error_not_a_change() -> None:
    desired = {"FifoQueue": "true", "VisibilityTimeout": "30"}
    assert diff_attributes("q", desired, {"VisibilityTimeout": "30"}) == ()
    with pytest.raises(ProvisionError, match="not a FIFO queue"):
        check_fifo("q", {"VisibilityTimeout": "30"})
    check_fifo("q", {"FifoQueue": "true"})


@given(st.integers(1, 43_200), st.none() | st.integers(1, 900))
def test_visibility_warning_follows_the_six_times_rule(
    visibility: int, timeout: int | None
) -> None:
    warning = visibility_warning(visibility, timeout)
    assert (warning is not None) == (timeout is not None and visibility < 6 * timeout)
    if warning and timeout and visibility < timeout:
        assert "Lambda refuses" in warning


def message(
    message_id: str, body: str, group: str | None = "g", sent: str = "1"
) -> ReceivedMessage:
    attributes = {"SentTimestamp": sent}
    if group:
        attributes["MessageGroupId"] = group
    return ReceivedMessage(message_id, "rh", body, attributes)


def test_resend_keeps_group_and_body_and_refuses_what_has_no_group() -> None:
    outgoing, refused = plan_resend(
        [
            message("m1", '{"uploadId": "u1"}', group="u1"),
            message("m2", '{"uploadId": "u2"}', group=None),
            message("m3", "garbage", group=None),
        ]
    )
    assert [(k, m.group_id, m.body) for k, m in outgoing] == [
        ("m1", "u1", '{"uploadId": "u1"}'),
        ("m2", "u2", '{"uploadId": "u2"}'),
    ]
    assert [(f.key, f.code) for f in refused] == [("m3", "NoMessageGroup")]


@given(st.text(min_size=1, max_size=40), st.text(max_size=15), st.text(max_size=15))
def test_redrive_dedup_ids_are_deterministic_and_valid(
    message_id: str, sent: str, other: str
) -> None:
    first = redrive_dedup_id(message(message_id, "b", sent=sent))
    assert first == redrive_dedup_id(message(message_id, "other body", sent=sent))
    assert len(first) <= 128  # SQS's limit
    assert first.isascii()
    if other != sent:
        # Another stay in the DLQ is another send, not a duplicate.
        assert first != redrive_dedup_id(message(message_id, "b", sent=other))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"error": "STEP_FAILED", "message": "bad image"}, "STEP_FAILED: bad image"),
        ({"ok": "ASSEMBLY_COMPLETED"}, None),
        ({"message": "only a message"}, "only a message"),
        (["not", "an", "object"], None),
    ],
)
def test_reason_from_status(record: object, reason: str | None) -> None:
    assert reason_from_status(record) == reason


def stats(visible: int = 0, dlq: int = 0, age: float | None = None) -> QueueStats:
    return QueueStats(
        processing=QueueDepth("p", visible, 0, 0),
        progress=QueueDepth("r", 0, 0, 0),
        dlq=QueueDepth("d", dlq, 0, 0),
        taken_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
        oldest_age_sec=age,
    )


@given(
    st.integers(0, 100),
    st.integers(0, 5),
    st.none() | st.floats(0, 5000),
    st.integers(0, 3),
    st.none() | st.integers(0, 50),
)
def test_health_is_unhealthy_exactly_when_a_threshold_is_passed(
    visible: int, dlq: int, age: float | None, max_dlq: int, max_backlog: int | None
) -> None:
    limits = HealthThresholds(max_dlq=max_dlq, max_oldest_age_sec=600, max_backlog=max_backlog)
    verdict = health(stats(visible, dlq, age), limits)
    expected = {
        code
        for code, passed in (
            ("dlq-not-empty", dlq > max_dlq),
            ("oldest-message-too-old", age is not None and age > 600),
            ("backlog-too-large", max_backlog is not None and visible > max_backlog),
        )
        if passed
    }
    assert {p.code for p in verdict.problems} == expected
    assert verdict.healthy == (not expected)


def test_a_growing_backlog_needs_a_previous_sample_or_a_rising_trend() -> None:
    assert health(stats(10)).healthy
    assert [p.code for p in health(stats(10), previous=stats(4)).problems] == ["backlog-growing"]
    assert health(stats(4), previous=stats(10)).healthy


def test_announcing_the_same_message_again_is_deduplicated_by_the_queue() -> None:
    # The FIFO queue drops a second send with the same id within five minutes (moto forgets
    # ids once their message is deleted, so this is checked on the messages themselves).
    failed = FailedJob(
        "m-1", "up-a", 3, datetime.now(timezone.utc), "{}", upload_id="up-a", branch="main"
    )
    once, twice = announcement(failed, now=100.0), announcement(failed, now=160.0)
    assert once is not None
    assert twice is not None
    assert once[1].dedup_id == twice[1].dedup_id
    assert once[1].group_id == "up-a"
    later = ProgressEvent.from_json(twice[1].body)
    assert (later.seq or 0) > (ProgressEvent.from_json(once[1].body).seq or 0)
    nameless = FailedJob("m-2", None, 3, None, "{not a job", body_error="not JSON")
    assert announcement(nameless, now=100.0) is None
