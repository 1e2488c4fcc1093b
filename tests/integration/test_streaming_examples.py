"""The streaming examples run as users run them, end to end."""

from __future__ import annotations

import json

import pytest

from examples import cancel_endpoint, sse_flask, sse_starlette


@pytest.mark.parametrize("example", [sse_flask, sse_starlette], ids=["flask", "starlette"])
def test_example_streams_an_upload_to_the_end(example: object) -> None:
    received = example.main()  # type: ignore[attr-defined]
    kinds = [kind for kind, _ in received]
    assert kinds[0] == "snapshot"
    assert json.loads(received[0][1])["state"] == "queued"
    types = [json.loads(data)["type"] for kind, data in received if kind == "message"]
    assert types == ["start", "step:start", "progress", "step:done", "done"]


def test_cancel_endpoint_example_cancels_with_the_upload_token_only() -> None:
    answers = cancel_endpoint.main()

    assert [status for status, _ in answers] == [200, 200, 403]
    assert json.loads(answers[0][1]) == {"uploadId": "upload-abc", "state": "cancelled"}
    assert "upload:main:upload-xyz" in json.loads(answers[2][1])["error"]
