"""Reading a ClientError's code: one helper, used everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.exceptions

from transflow._aws.errors import client_error_code, client_error_codes, client_error_message
from transflow._aws.retry import is_retryable_error

SRC = Path(__file__).parents[2] / "src" / "transflow"


def client_error(error: dict[str, str], status: int = 400) -> botocore.exceptions.ClientError:
    response: dict[str, object] = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "GetQueueUrl")  # type: ignore[arg-type]


def test_the_code_the_query_code_and_the_message() -> None:
    exc = client_error(
        {
            "Code": "QueueDoesNotExist",
            "QueryErrorCode": "AWS.SimpleQueueService.NonExistentQueue",
            "Message": " no such queue \n",
        }
    )
    assert client_error_code(exc) == "QueueDoesNotExist"
    assert client_error_codes(exc) == {
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
    }
    assert client_error_message(exc) == "no such queue"


def test_a_response_without_an_error_has_no_code() -> None:
    exc = botocore.exceptions.ClientError({}, "GetQueueUrl")
    assert client_error_code(exc) == ""
    assert client_error_codes(exc) == frozenset()
    assert client_error_message(exc) == ""
    assert not is_retryable_error(exc)
    assert is_retryable_error(client_error({"Code": "ThrottlingException"}))


def test_only_the_helper_reads_the_error_out_of_a_response() -> None:
    reading = re.compile(r"""\[["']Error["']\]|get\(["']Error["']""")
    helper = SRC / "_aws" / "errors.py"
    readers = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path != helper and reading.search(path.read_text(encoding="utf-8"))
    ]
    assert readers == []
