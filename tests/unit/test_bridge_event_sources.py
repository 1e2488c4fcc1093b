"""Which events the bridge reads: S3 notifications directly, through SQS, through SNS (also
SQS → SNS → S3); everything else is a failure, and one hostile record fails alone."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.vectors import load_vector
from transflow import BridgeError, GroupingBridge
from transflow.ingest.s3events import EventSource, parse_event

DIRECT = load_vector("s3-event-direct.json")
WRAPPED = load_vector("sqs-event-wrapping-s3.json")


def sns_envelope(message: str) -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": "sns-1", "Message": message}


def sns_event(*messages: str) -> dict[str, Any]:
    return {
        "Records": [
            {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": sns_envelope(m)}
            for m in messages
        ]
    }


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "body": body, "eventSource": "aws:sqs"}
            for i, body in enumerate(bodies)
        ]
    }


KINESIS = {
    "Records": [
        {"eventSource": "aws:kinesis", "eventName": "aws:kinesis:record", "kinesis": {}},
    ]
}
DYNAMODB = {
    "Records": [{"eventSource": "aws:dynamodb", "eventName": "INSERT", "dynamodb": {}}],
}


def test_sns_to_lambda_and_sqs_to_sns_to_s3_are_unwrapped() -> None:
    direct = parse_event(DIRECT)
    through_sns = parse_event(sns_event(json.dumps(DIRECT)))
    assert through_sns.source is EventSource.SNS
    assert not through_sns.failed
    assert [r.key for r in through_sns.records] == [r.key for r in direct.records]

    # Every body of the SQS vector, wrapped by SNS on its way to the queue.
    wrapped = copy.deepcopy(WRAPPED)
    for record in wrapped["Records"]:
        record["body"] = json.dumps(sns_envelope(record["body"]))
    plain, via_sns = parse_event(WRAPPED), parse_event(wrapped)
    assert via_sns.records == plain.records
    assert [s.message_id for s in via_sns.skipped] == [s.message_id for s in plain.skipped]
    assert not via_sns.failed


@pytest.mark.parametrize(
    "event",
    [
        KINESIS,
        DYNAMODB,
        sns_event(json.dumps({"alarm": "CPU high"})),
        sns_event("plain text, not JSON"),
        {"Records": [{"EventSource": "aws:sns", "Sns": {"Subject": "no message"}}]},
        {"Records": [{"eventSource": "aws:ses", "ses": {}}]},
        {"Records": [{"eventName": "ObjectCreated:Put"}]},  # no source, no s3: not S3
    ],
)
def test_events_that_are_not_s3_fail_instead_of_being_skipped(event: dict[str, Any]) -> None:
    parsed = parse_event(event)
    assert parsed.failed, parsed
    assert not parsed.records
    assert not parsed.skipped
    bridge = GroupingBridge(None, None, queue_url="unused", upload_bucket="uploads")  # type: ignore[arg-type]
    with pytest.raises(BridgeError, match="not enqueued"):
        bridge.lambda_handler(event)


def test_a_non_s3_body_in_an_sqs_batch_is_a_batch_item_failure() -> None:
    test_event = WRAPPED["Records"][0]["body"]  # s3:TestEvent: skipped, the message succeeds
    event = sqs_event(test_event, json.dumps(DYNAMODB), json.dumps(sns_envelope('{"a": 1}')))
    bridge = GroupingBridge(None, None, queue_url="unused", upload_bucket="uploads")  # type: ignore[arg-type]
    assert bridge.lambda_handler(event) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    }
    # Every message failed: the whole batch is retried even without ReportBatchItemFailures.
    with pytest.raises(BridgeError):
        bridge.lambda_handler(sqs_event(json.dumps(KINESIS)))


def test_a_failure_without_a_message_id_fails_the_batch() -> None:
    event = sqs_event(WRAPPED["Records"][0]["body"])
    event["Records"].append({"body": "{}", "eventSource": "aws:sqs", "messageId": ""})
    bridge = GroupingBridge(None, None, queue_url="unused", upload_bucket="uploads")  # type: ignore[arg-type]
    with pytest.raises(BridgeError):
        bridge.lambda_handler(event)


# -- hostile records ------------------------------------------------------------------------

HUGE = "9" * 5000
HOSTILE_VALUES = st.one_of(
    st.just([1, 2]),
    st.just({"x": "y"}),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.just(["0055AED6DCD90281E5"]),
)
# Where a hostile value may land in a created-object record.
PATHS = [
    ("eventName",),
    ("eventSource",),
    ("s3",),
    ("s3", "bucket"),
    ("s3", "bucket", "name"),
    ("s3", "object"),
    ("s3", "object", "key"),
    ("s3", "object", "size"),
    ("s3", "object", "eTag"),
    ("s3", "object", "sequencer"),
    ("s3", "object", "versionId"),
]


def good_body() -> dict[str, Any]:
    return {"Records": [copy.deepcopy(DIRECT["Records"][0])]}


def set_path(data: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    for part in path[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[path[-1]] = value


@settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from(PATHS),
    value=HOSTILE_VALUES,
    position=st.integers(0, 3),
)
def test_one_hostile_record_fails_alone(
    path: tuple[str, ...], value: object, position: int
) -> None:
    hostile = good_body()
    set_path(hostile["Records"][0], path, value)
    bodies = [json.dumps(good_body()) for _ in range(3)]
    bodies.insert(position, json.dumps(hostile))
    parsed = parse_event(sqs_event(*bodies))
    others = {f"m{i}" for i in range(4)} - {f"m{position}"}
    # The good messages are read in full whatever the hostile one holds.
    assert {r.message_id for r in parsed.records} >= others
    assert {f.message_id for f in parsed.failed} <= {f"m{position}"}
    for record in parsed.records:
        assert isinstance(record.key, str)
        assert record.sequencer is None or isinstance(record.sequencer, str)
        assert record.version_id is None or isinstance(record.version_id, str)
        hash((record.bucket, record.key, record.version))  # usable in a dedup id


@pytest.mark.parametrize(
    "hostile",
    [
        '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", '
        '"s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": ' + HUGE + "}}}]}",
        '{"Records": [{"eventSource": "aws:s3", "eventName": ' + HUGE + "}]}",
        '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", '
        '"s3": {"bucket": {"name": "b"}, "object": {"key": "k", "sequencer": ["a", "b"]}}}]}',
        "[" * 100_000,
    ],
)
def test_numbers_past_the_digit_limit_and_deep_nesting_fail_their_message_only(
    hostile: str,
) -> None:
    parsed = parse_event(sqs_event(json.dumps(good_body()), hostile))
    assert [r.message_id for r in parsed.records] == ["m0"] + (
        ["m1"] if "sequencer" in hostile else []
    )
    if "sequencer" in hostile:
        # A list is no sequencer: the record stands, without one.
        assert parsed.records[1].sequencer is None
    else:
        assert [f.message_id for f in parsed.failed] == ["m1"]
