"""The streaming examples run as users run them, end to end."""

from __future__ import annotations

import json

import pytest

from examples import sse_flask, sse_starlette


@pytest.mark.parametrize("example", [sse_flask, sse_starlette], ids=["flask", "starlette"])
def test_example_streams_an_upload_to_the_end(example: object) -> None:
    received = example.main()  # type: ignore[attr-defined]
    kinds = [kind for kind, _ in received]
    assert kinds[0] == "snapshot"
    assert json.loads(received[0][1])["state"] == "queued"
    types = [json.loads(data)["type"] for kind, data in received if kind == "message"]
    assert types == ["start", "step:start", "progress", "step:done", "done"]
