"""Batch sends, deletes and visibility changes on the moto server, with injected faults."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from bench.chaos import CallFaults

from tests.support.faults import EntryFault, EntryFaults
from transflow._aws.metering import count_requests
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import (
    OutgoingMessage,
    change_visibility_batch,
    delete_batch,
    send_batch,
)
from transflow.cli.local import LocalAws, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=5, initial=0.001, maximum=0.01)


@pytest.fixture
def bare_sqs(aws: LocalAws) -> SQSClient:
    """A client without botocore's own retries, so only ours are at work."""
    return aws.sqs(local_client_config(retries={"mode": "standard", "total_max_attempts": 1}))


def fifo(sqs: SQSClient, name: str = "q.fifo") -> str:
    return sqs.create_queue(
        QueueName=name, Attributes={"FifoQueue": "true", "VisibilityTimeout": "60"}
    )["QueueUrl"]


def drain(sqs: SQSClient, url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def messages(n: int, size: int = 10, groups: int = 1) -> list[tuple[str, OutgoingMessage]]:
    return [
        (f"k{i}", OutgoingMessage(f"{i:0{size}d}", group_id=f"g{i % groups}", dedup_id=f"d{i}"))
        for i in range(n)
    ]


def test_sends_in_order_in_calls_of_ten(bare_sqs: SQSClient) -> None:
    url = fifo(bare_sqs)
    with count_requests(bare_sqs) as counter:
        result = send_batch(bare_sqs, url, messages(25, groups=25), policy=FAST)
    assert result.ok
    assert result.succeeded == tuple(f"k{i}" for i in range(25))
    assert counter.count("SendMessageBatch") == 3
    assert drain(bare_sqs, url) == [f"{i:010d}" for i in range(25)]


def test_one_group_takes_one_entry_per_call(bare_sqs: SQSClient) -> None:
    # Two entries of a group in one call could be split by a partial failure (the later one
    # accepted, the earlier retried behind it): a group's entries go one call each.
    url = fifo(bare_sqs)
    with count_requests(bare_sqs) as counter:
        result = send_batch(bare_sqs, url, messages(12, groups=3), policy=FAST)
    assert result.ok
    assert counter.count("SendMessageBatch") == 4  # 3 entries (one per group) per call
    # FIFO orders within a group only: LocalStack hands the groups out in another order.
    assert group_order(drain(bare_sqs, url), 3) == group_order([f"{i:010d}" for i in range(12)], 3)


def fail_once(dedup_id: str) -> Callable[[int, dict[str, Any]], EntryFault | None]:
    """A fault for the first try of the entry with ``dedup_id``, without sender fault."""
    tried: list[int] = []

    def decide(call: int, entry: dict[str, Any]) -> EntryFault | None:
        if entry.get("MessageDeduplicationId") != dedup_id or tried:
            return None
        tried.append(call)
        return ("InternalError", False)

    return decide


def group_order(bodies: list[str], groups: int) -> dict[int, list[int]]:
    by_group: dict[int, list[int]] = {}
    for body in bodies:
        by_group.setdefault(int(body) % groups, []).append(int(body))
    return by_group


@pytest.mark.parametrize("failing", ["k4", "k0"])
def test_an_entry_failed_in_the_middle_of_a_group_is_never_overtaken(
    bare_sqs: SQSClient, failing: str
) -> None:
    # k4 is group g1's second entry (k1, k4, k7, k10): failed once without sender fault, it
    # is sent again, and g1's later entries must still arrive after it, each once.
    url = fifo(bare_sqs)
    faults = EntryFaults(bare_sqs, "SendMessageBatch", fail_once(f"d{failing[1:]}"))
    result = send_batch(bare_sqs, url, messages(12, groups=3), policy=FAST)
    assert faults.injected == 1
    assert result.ok
    assert sorted(result.succeeded) == sorted(f"k{i}" for i in range(12))
    bodies = drain(bare_sqs, url)
    assert sorted(bodies) == [f"{i:010d}" for i in range(12)]  # nothing lost, nothing doubled
    assert group_order(bodies, 3) == {g: list(range(g, 12, 3)) for g in range(3)}


def test_byte_limit_splits_calls_and_a_too_large_message_fails_alone(
    bare_sqs: SQSClient,
) -> None:
    url = fifo(bare_sqs)
    items = messages(5, size=100_000, groups=5)
    items.insert(2, ("huge", OutgoingMessage("x" * 300_000, group_id="g", dedup_id="h")))
    with count_requests(bare_sqs) as counter:
        result = send_batch(bare_sqs, url, items, max_bytes=262_144, policy=FAST)
    assert [f.key for f in result.failed] == ["huge"]
    assert result.failed[0].code == "MessageTooLarge"
    assert len(result.succeeded) == 5
    assert counter.count("SendMessageBatch") == 3  # 2 + 2 + 1 bodies of 100 kB
    assert len(drain(bare_sqs, url)) == 5


def test_an_entry_failed_without_sender_fault_is_sent_again(bare_sqs: SQSClient) -> None:
    url = fifo(bare_sqs)
    faults = EntryFaults(
        bare_sqs,
        "SendMessageBatch",
        lambda call, entry: ("InternalError", False) if call == 0 and entry["Id"] == "e3" else None,
    )
    result = send_batch(bare_sqs, url, messages(10, groups=10), policy=FAST)
    assert faults.injected == 1
    assert result.ok
    assert result.calls == 2
    assert sorted(drain(bare_sqs, url)) == sorted(f"{i:010d}" for i in range(10))


def test_a_sender_fault_is_reported_and_the_rest_goes_on(bare_sqs: SQSClient) -> None:
    url = fifo(bare_sqs)
    EntryFaults(
        bare_sqs,
        "SendMessageBatch",
        lambda _call, entry: ("InvalidParameterValue", True) if entry["Id"] == "e1" else None,
    )
    result = send_batch(bare_sqs, url, messages(4, groups=4), policy=FAST)
    assert [(f.key, f.code, f.sender_fault) for f in result.failed] == [
        ("k1", "InvalidParameterValue", True)
    ]
    assert set(result.succeeded) == {"k0", "k2", "k3"}
    assert result.calls == 1
    assert len(drain(bare_sqs, url)) == 3


@pytest.mark.parametrize("fault", ["throttle", "500", "drop"])
def test_failed_calls_are_retried(bare_sqs: SQSClient, fault: str) -> None:
    url = fifo(bare_sqs)
    faults = CallFaults(
        bare_sqs, lambda op, i: fault if op == "SendMessageBatch" and i < 2 else None
    )
    result = send_batch(bare_sqs, url, messages(3, groups=3), policy=FAST)
    assert faults.injected == 2
    assert result.ok
    assert result.calls == 3
    assert len(drain(bare_sqs, url)) == 3


def test_retries_end_and_every_entry_is_reported(bare_sqs: SQSClient) -> None:
    url = fifo(bare_sqs)
    CallFaults(bare_sqs, lambda op, _i: "500" if op == "SendMessageBatch" else None)
    result = send_batch(bare_sqs, url, messages(3), policy=FAST)
    assert result.succeeded == ()
    assert {f.key for f in result.failed} == {"k0", "k1", "k2"}
    assert result.calls == FAST.attempts


def test_delete_reports_a_stale_receipt_handle_and_deletes_the_rest(bare_sqs: SQSClient) -> None:
    url = fifo(bare_sqs)
    send_batch(bare_sqs, url, messages(12, groups=12), policy=FAST)
    received: list[Any] = []
    while len(received) < 12:
        received += bare_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    handles = [(f"m{i}", m["ReceiptHandle"]) for i, m in enumerate(received)]
    handles.append(("stale", "not-a-receipt-handle"))
    with count_requests(bare_sqs) as counter:
        result = delete_batch(bare_sqs, url, handles, policy=FAST)
    assert [f.key for f in result.failed] == ["stale"]
    assert len(result.succeeded) == 12
    assert counter.count("DeleteMessageBatch") == 2


@pytest.mark.parametrize(
    "code", ["ReceiptHandleIsInvalid", "AWS.SimpleQueueService.ReceiptHandleIsInvalid"]
)
def test_an_invalid_receipt_handle_is_never_retried_whatever_sender_fault_says(
    bare_sqs: SQSClient, code: str
) -> None:
    # LocalStack answers a stale handle this way (SenderFault=false): retrying it only
    # repeats the call until the attempts run out.
    url = fifo(bare_sqs)
    send_batch(bare_sqs, url, messages(3, groups=3), policy=FAST)
    received = bare_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 3
    faults = EntryFaults(
        bare_sqs,
        "DeleteMessageBatch",
        lambda _call, entry: (code, False) if entry["Id"] == "e1" else None,
    )
    handles = [(f"m{i}", m["ReceiptHandle"]) for i, m in enumerate(received)]
    with count_requests(bare_sqs) as counter:
        result = delete_batch(bare_sqs, url, handles, policy=FAST)
    assert faults.injected == 1
    assert [(f.key, f.code, f.sender_fault) for f in result.failed] == [("m1", code, False)]
    assert set(result.succeeded) == {"m0", "m2"}
    assert counter.count("DeleteMessageBatch") == 1
    assert result.calls == 1


def test_a_real_receipt_handle_of_another_queue_is_reported_after_one_call(
    bare_sqs: SQSClient,
) -> None:
    # A genuine handle, but not this queue's: LocalStack answers ReceiptHandleIsInvalid with
    # SenderFault=false; before the code came first, that took FAST.attempts calls.
    url, other = fifo(bare_sqs), fifo(bare_sqs, "other.fifo")
    send_batch(bare_sqs, other, messages(1), policy=FAST)
    (message,) = bare_sqs.receive_message(QueueUrl=other)["Messages"]
    with count_requests(bare_sqs) as counter:
        result = delete_batch(bare_sqs, url, [("foreign", message["ReceiptHandle"])], policy=FAST)
    assert [f.key for f in result.failed] == ["foreign"]
    assert "ReceiptHandle" in result.failed[0].code
    assert counter.count("DeleteMessageBatch") == 1


def test_change_visibility_releases_messages(bare_sqs: SQSClient) -> None:
    url = fifo(bare_sqs)
    send_batch(bare_sqs, url, messages(3), policy=FAST)
    received = bare_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert bare_sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    result = change_visibility_batch(
        bare_sqs, url, [(m["MessageId"], (m["ReceiptHandle"], 0)) for m in received], policy=FAST
    )
    assert result.ok
    again = bare_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(again) == 3
