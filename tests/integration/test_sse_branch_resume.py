"""A branch stream resumed on another hub over real SSE servers (issue 20, item 4): the two
hubs got the same events in different valid orders (each upload's own order kept); the
browser's Last-Event-ID from the first resumes on the second with no loss and no repeat,
at every cut point."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.streaming import SseClient, SseEvent, asgi_server, fifo_queue, wsgi_server
from transflow import ProgressEvent, ProgressHub, ProgressQueue
from transflow.streaming.apps import asgi_app, wsgi_app

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)
Server = Callable[[Any], AbstractContextManager[str]]
KINDS: list[tuple[str, Server, Callable[..., Any]]] = [
    ("wsgi", wsgi_server, wsgi_app),
    ("asgi", asgi_server, asgi_app),
]
# One upload's late batch entry (b:2 after b:3) included; the instances interleave differently.
FIRST = [("a", 1), ("b", 1), ("a", 2), ("b", 3), ("c", 1), ("b", 2), ("a", 3)]
SECOND = [("c", 1), ("b", 1), ("b", 3), ("b", 2), ("a", 1), ("a", 2), ("a", 3)]


def ev(upload: str, seq: int) -> ProgressEvent:
    return ProgressEvent.create(
        "progress", upload_id=upload, branch="main", timestamp=T0, seq=seq, percent=seq
    )


def messages(client: SseClient) -> list[SseEvent]:
    return [e for e in client.snapshot() if e.type == "message"]


def replayed(client: SseClient, events: list[SseEvent]) -> bool:
    # The replay is written before the first heartbeat: a heartbeat after the snapshot
    # means everything it replays has arrived.
    return any(e.type == "snapshot" for e in events) and client.raw.endswith(b":\n")


def pairs(events: list[SseEvent]) -> list[tuple[str, int]]:
    out = []
    for e in events:
        data = json.loads(e.data)
        out.append((data["uploadId"], data["seq"]))
    return out


@pytest.mark.parametrize(("kind", "server", "make_app"), KINDS, ids=[k[0] for k in KINDS])
def test_a_branch_stream_resumes_exactly_on_another_hub(
    sqs: SQSClient, kind: str, server: Server, make_app: Callable[..., Any]
) -> None:
    # Not started: the events are handed to each hub as its own queue would deliver them.
    first = ProgressHub(sqs, ProgressQueue(fifo_queue(sqs, f"first-{kind}.fifo")))
    second = ProgressHub(sqs, ProgressQueue(fifo_queue(sqs, f"second-{kind}.fifo")))
    for upload, seq in SECOND:
        second.dispatch(ev(upload, seq))

    def anyone(_request: Any, _channel: str) -> bool:
        return True

    with (
        server(make_app(first, authorize=anyone, heartbeat=0.2)) as first_url,
        server(make_app(second, authorize=anyone, heartbeat=0.2)) as second_url,
    ):
        watching = SseClient(f"{first_url}/?branch=main").start()
        watching.wait_for(lambda events: any(e.type == "snapshot" for e in events))
        for upload, seq in FIRST:
            first.dispatch(ev(upload, seq))
        watching.wait_for(lambda events: len([e for e in events if e.type == "message"]) == 7)
        watching.close()
        seen = messages(watching)
        assert pairs(seen) == FIRST
        assert all(":" not in e.last_event_id and len(e.last_event_id) <= 382 for e in seen)
        for cut in range(1, len(seen) + 1):
            resumed = SseClient(
                f"{second_url}/?branch=main", headers={"Last-Event-ID": seen[cut - 1].last_event_id}
            ).start()
            resumed.wait_for(partial(replayed, resumed))
            resumed.close()
            after = pairs(messages(resumed))
            assert sorted(pairs(seen[:cut]) + after) == sorted(FIRST), f"cut {cut}: {after}"
