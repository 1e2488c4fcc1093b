"""The pure decisions of transflow._aws.sqs_batch."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transflow._aws.retry import RetryPolicy, is_retryable_error
from transflow._aws.sqs_batch import (
    OutgoingMessage,
    _run,
    is_retryable_entry,
    message_size,
    next_call,
    plan_batches,
)


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3_000), max_size=80),
    max_bytes=st.integers(min_value=1_000, max_value=5_000),
)
def test_plan_keeps_order_respects_limits_and_places_every_item_once(
    sizes: list[int], max_bytes: int
) -> None:
    items = [(f"k{i}", size) for i, size in enumerate(sizes)]
    batches, too_large = plan_batches(items, size_of=lambda s: s, max_bytes=max_bytes)
    planned = [key for batch in batches for key, _ in batch]
    rejected = [key for key, _ in too_large]
    assert sorted(planned + rejected) == sorted(k for k, _ in items)
    assert planned == [k for k, s in items if s <= max_bytes]
    assert rejected == [k for k, s in items if s > max_bytes]
    for batch in batches:
        assert 1 <= len(batch) <= 10
        assert sum(s for _, s in batch) <= max_bytes


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3_000), max_size=80),
    max_bytes=st.integers(min_value=1_000, max_value=5_000),
    max_batch_bytes=st.integers(min_value=500, max_value=8_000),
)
def test_a_batch_limit_of_its_own_bounds_each_call_and_each_item(
    sizes: list[int], max_bytes: int, max_batch_bytes: int
) -> None:
    # SNS: 256 KiB per message and per call, where an SQS queue may allow 1 MiB per message.
    items = [(f"k{i}", size) for i, size in enumerate(sizes)]
    batches, too_large = plan_batches(
        items, size_of=lambda s: s, max_bytes=max_bytes, max_batch_bytes=max_batch_bytes
    )
    fits = min(max_bytes, max_batch_bytes)
    assert [key for batch in batches for key, _ in batch] == [k for k, s in items if s <= fits]
    assert [key for key, _ in too_large] == [k for k, s in items if s > fits]
    for batch in batches:
        assert 1 <= len(batch) <= 10
        assert sum(s for _, s in batch) <= max_batch_bytes


def test_message_size_counts_utf8_bytes_and_attributes() -> None:
    assert message_size(OutgoingMessage("é")) == 2
    assert message_size(OutgoingMessage("ab", string_attributes={"k": "vv"})) == 2 + 1 + 6 + 2


def _response(code: str, status: int) -> Any:
    return {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_classification() -> None:
    throttled = botocore.exceptions.ClientError(
        {"Error": {"Code": "ThrottlingException"}}, "SendMessageBatch"
    )
    invalid = botocore.exceptions.ClientError(
        _response("InvalidParameterValue", 400), "SendMessageBatch"
    )
    server = botocore.exceptions.ClientError(_response("Weird", 503), "X")
    assert is_retryable_error(throttled)
    assert is_retryable_error(server)
    assert not is_retryable_error(invalid)
    assert is_retryable_error(botocore.exceptions.ConnectionClosedError(endpoint_url="x"))
    assert not is_retryable_error(ValueError("x"))
    assert is_retryable_entry("InternalError", True)
    assert is_retryable_entry("Anything", False)
    assert not is_retryable_entry("InvalidParameterValue", True)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ReceiptHandleIsInvalid", ""),
        ("AWS.SimpleQueueService.ReceiptHandleIsInvalid", "whatever"),
        ("InvalidReceiptHandle", ""),
        (
            "InvalidParameterValue",
            "Value abc for parameter ReceiptHandle is invalid. Reason: "
            "The receipt handle has expired.",
        ),
        ("InvalidParameterValue", "The input receipt handle is invalid."),
        ("MessageNotInflight", ""),
    ],
)
@pytest.mark.parametrize("sender_fault", [False, True])
def test_an_invalid_receipt_handle_is_never_retried(
    code: str, message: str, sender_fault: bool
) -> None:
    assert not is_retryable_entry(code, sender_fault, message)
    response = _response(code, 500)
    response["Error"]["Message"] = message
    error = botocore.exceptions.ClientError(response, "DeleteMessage")
    assert not is_retryable_error(error)


def test_the_code_decides_before_sender_fault() -> None:
    assert is_retryable_entry("ThrottlingException", True)
    assert is_retryable_entry("InvalidParameterValue", False, "some other parameter")
    assert not is_retryable_entry("InvalidParameterValue", True, "some other parameter")


@given(
    groups=st.lists(st.sampled_from(["a", "b", "c", None]), max_size=40),
    max_entries=st.integers(min_value=1, max_value=10),
)
def test_next_call_takes_each_group_head_in_order(
    groups: list[str | None], max_entries: int
) -> None:
    items = [(f"k{i}", group) for i, group in enumerate(groups)]
    keys = next_call(
        items, group_of=lambda g: g, size_of=lambda _: 1, max_bytes=100, max_entries=max_entries
    )
    assert bool(keys) == bool(items)
    assert 0 < len(keys) <= max_entries or not items
    order = [key for key, _ in items]
    assert keys == sorted(keys, key=order.index)
    chosen = [group for key, group in items if key in keys]
    named = [g for g in chosen if g is not None]
    assert len(named) == len(set(named))  # at most one entry of a group per call
    for key in keys:  # and it is its group's first pending entry
        group = dict(items)[key]
        if group is not None:
            assert key == next(k for k, g in items if g == group)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=25),
    faults=st.lists(st.sampled_from(["ok", "retry", "retry", "sender", "missing"]), max_size=60),
)
def test_partial_failures_never_reorder_a_group_lose_or_double(
    groups: list[str], faults: list[str]
) -> None:
    # A stub transport (not SQS: it answers each entry as the script says) records what
    # was accepted, in order.
    items = [(f"k{i}", (f"k{i}", group)) for i, group in enumerate(groups)]
    script = iter(faults)
    accepted: list[str] = []

    def call(entries: list[dict[str, Any]]) -> dict[str, Any]:
        ok, failed = [], []
        for entry in entries:
            fault = next(script, "ok")
            if fault == "ok":
                accepted.append(entry["Key"])
                ok.append({"Id": entry["Id"]})
            elif fault in {"retry", "sender"}:
                failed.append({"Id": entry["Id"], "Code": "X", "SenderFault": fault == "sender"})
        return {"Successful": ok, "Failed": failed}

    result = _run(
        "Stub",
        items,
        call,
        lambda item: {"Key": item[0]},
        RetryPolicy(attempts=3, initial=0, maximum=0),
        group_of=lambda item: item[1],
    )
    keys = [k for k, _ in items]
    assert sorted(result.succeeded + tuple(f.key for f in result.failed)) == sorted(keys)
    assert sorted(result.succeeded) == sorted(accepted)  # each accepted once, all reported
    assert len(set(accepted)) == len(accepted)
    for group in set(groups):
        sent = [k for k, (_, g) in items if g == group and k in accepted]
        assert [k for k in accepted if k in sent] == sent  # the group's order, gaps allowed
