"""The Lambda SQS batch contract: records in, FIFO rule, partial batch response out. No AWS."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import EventFormatError, JobFailedError
from transflow._aws.lambda_batch import (
    BatchGate,
    BatchOutcome,
    partial_batch_response,
    process_partial_response,
    sqs_records,
)
from transflow._wire.messages import ReceivedMessage


def _record(message_id: str, group: str | None = None) -> dict[str, Any]:
    attributes = {"ApproximateReceiveCount": "1"}
    if group is not None:
        attributes["MessageGroupId"] = group
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": message_id,
        "attributes": attributes,
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q.fifo",
    }


class _Context:
    def __init__(self, millis: list[int]) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis.pop(0) if len(self.millis) > 1 else self.millis[0]


def test_records_become_received_messages() -> None:
    messages = sqs_records({"Records": [_record("m-1", "g"), "not a record"]})
    assert messages[0] == ReceivedMessage(
        "m-1",
        "rh-m-1",
        "m-1",
        {"ApproximateReceiveCount": "1", "MessageGroupId": "g"},
        "arn:aws:sqs:eu-west-1:123456789012:q.fifo",
    )
    assert messages[1].message_id == ""  # kept, so the count of records stays right
    with pytest.raises(EventFormatError, match="Records"):
        sqs_records({"detail": {}})


def test_the_response_names_each_failed_message_once_in_order() -> None:
    assert partial_batch_response(["b", "a", "b"]) == {
        "batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "a"}]
    }
    assert partial_batch_response([]) == {"batchItemFailures": []}
    assert BatchOutcome(2, ("x",)).response() == {"batchItemFailures": [{"itemIdentifier": "x"}]}
    assert BatchOutcome(1, ("x",)).all_failed
    assert not BatchOutcome(0).all_failed


def test_after_a_failure_its_group_stops_and_other_groups_go_on() -> None:
    ran: list[str] = []

    def handler(message: ReceivedMessage, remaining: object) -> None:
        ran.append(message.message_id)
        if message.message_id == "a1":
            raise JobFailedError("up", "boom")

    event = {
        "Records": [
            _record("a1", "A"),
            _record("b1", "B"),
            _record("a2", "A"),
            _record("b2", "B"),
            _record("s1"),
        ]
    }
    outcome = process_partial_response(event, handler)
    assert ran == ["a1", "b1", "b2", "s1"]
    assert outcome == BatchOutcome(5, ("a1", "a2"))


def test_an_unexpected_exception_fails_its_record_only() -> None:
    def handler(message: ReceivedMessage, remaining: object) -> None:
        if message.message_id == "m1":
            raise RuntimeError("bug")

    outcome = process_partial_response({"Records": [_record("m1"), _record("m2")]}, handler)
    assert outcome.failed == ("m1",)


def test_short_time_stops_the_rest_of_the_batch() -> None:
    ran: list[str] = []
    seen: list[float] = []

    def handler(message: ReceivedMessage, remaining: Any) -> None:
        ran.append(message.message_id)
        seen.append(remaining())

    context = _Context([60_000, 60_000, 5_000, 60_000])
    event = {"Records": [_record("m1", "A"), _record("m2", "B"), _record("m3", "C")]}
    outcome = process_partial_response(event, handler, context=context, time_margin=10)
    assert ran == ["m1"]
    assert seen == [60.0]
    assert outcome.failed == ("m2", "m3")  # m3 had time again, but the batch stopped


_GROUPS = st.lists(st.tuples(st.sampled_from(["A", "B", "C", None]), st.booleans()), max_size=12)


@given(_GROUPS)
def test_fifo_rule_holds_for_any_batch(plan: list[tuple[str | None, bool]]) -> None:
    """No message runs after a failed message of its group; every other message runs;
    every record that did not succeed is reported, in event order."""
    records = [_record(f"m{i}", group) for i, (group, _) in enumerate(plan)]
    fails = {f"m{i}" for i, (_, bad) in enumerate(plan) if bad}
    ran: list[str] = []

    def handler(message: ReceivedMessage, remaining: object) -> None:
        ran.append(message.message_id)
        if message.message_id in fails:
            raise JobFailedError("up", "boom")

    outcome = process_partial_response({"Records": records}, handler)
    failed_groups: set[str] = set()
    expected_ran, expected_failed = [], []
    for i, (group, bad) in enumerate(plan):
        mid = f"m{i}"
        if group is not None and group in failed_groups:
            expected_failed.append(mid)
            continue
        expected_ran.append(mid)
        if bad:
            expected_failed.append(mid)
            if group is not None:
                failed_groups.add(group)
    assert ran == expected_ran
    assert list(outcome.failed) == expected_failed
    assert outcome.total == len(plan)


def test_the_gate_is_a_value() -> None:
    gate = BatchGate(5)
    message = ReceivedMessage("m", "h", "", {"MessageGroupId": "g"})
    closed = gate.after_failure(message, 100)
    assert gate.failed_groups == frozenset()  # the old value is unchanged
    assert closed.failed_groups == {"g"}
    assert not closed.out_of_time
    assert gate.after_failure(message, 1).out_of_time
