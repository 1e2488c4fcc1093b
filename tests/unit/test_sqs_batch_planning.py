"""The pure decisions of transflow._aws.sqs_batch."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow._aws.retry import is_retryable_error
from transflow._aws.sqs_batch import (
    OutgoingMessage,
    is_retryable_entry,
    message_size,
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
