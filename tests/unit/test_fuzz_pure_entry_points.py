"""Fuzzing every pure entry point with arbitrary JSON, text and bytes (issue 13).

Each test asserts the same three things: only documented typed errors
(:class:`~transflow.TransflowError` subclasses) escape, a good message beside the hostile
ones is unaffected, and nothing is lost (every message is counted as exactly one outcome).
Entry points that need S3 or SQS are fuzzed in tests/integration/test_fuzz_aws_entry_points.py.
Example counts are bounded so the suite stays fast."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fanout import NoClient
from tests.support.strategies import HUGE, json_values, mutated, texts_for
from transflow import (
    ConfigError,
    EventFormatError,
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    ReceivedMessage,
    StreamTokenError,
    TransflowError,
    WebhookSignatureError,
    issue_stream_token,
    load_config,
    upload_channel,
)
from transflow._aws.claimcheck import ClaimCheck, decode_job_message
from transflow._wire.packs import pack_body, packed_items
from transflow._wire.tokens import verify_stream_token
from transflow.ingest.s3events import parse_event
from transflow.ops.announce import announcement
from transflow.ops.dlq import FailedJob, describe_failed
from transflow.ops.redrive import plan_resend
from transflow.processing.webhooks import sign, verify
from transflow.streaming.apps import wsgi_app
from transflow.streaming.sse import bearer_token, channel_from_query

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)
SECRET = "Zr4nTq9xW2bLkVp8sYc3Hd6JfM0aGe1uQo5iNt7R"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------

GOOD_EVENT = ProgressEvent.create(
    "progress", upload_id="good", branch="main", timestamp=T0, seq=1, percent=5
).to_dict()
GOOD_JOB = ProcessingJob.from_dict(
    {
        "uploadId": "good",
        "templateId": "t",
        "branch": "main",
        "objects": [{"bucket": "b", "key": "uploads/main/good/a.txt"}],
    }
).to_dict()


# -- Lambda records and queue messages ------------------------------------------------------


@FUZZ
@given(json_values | st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_lambda_record_or_sqs_message_reads_as_a_message(record: Any) -> None:
    for make in (ReceivedMessage.from_lambda_record, ReceivedMessage.from_sqs_message):
        message = make(record)
        assert isinstance(message.body, str)
        assert message.receive_count >= 0 or message.receive_count < 0  # never raises
        assert message.group_id is None or isinstance(message.group_id, str)


# -- the hub's message path ---------------------------------------------------------------


def events_in(body: str) -> int:
    """How many events the hub accounts for in a message body."""
    try:
        items = packed_items(body)
    except EventFormatError:
        return 1
    return 1 if items is None else len(items)


@FUZZ
@given(
    st.lists(
        texts_for(GOOD_EVENT)
        | st.lists(texts_for(GOOD_EVENT), min_size=2, max_size=3).map(pack_body),
        min_size=1,
        max_size=6,
    )
)
def test_the_hub_message_path_drops_what_it_cannot_use_and_loses_nothing(
    bodies: list[str],
) -> None:
    hub = ProgressHub(NoClient(), ProgressQueue("https://queue/progress.fifo"))  # type: ignore[arg-type]
    sub = hub.subscribe(upload_channel("main", "good"))
    good_seq = 2**52
    for i, body in enumerate([*bodies, json.dumps({**GOOD_EVENT, "seq": good_seq})]):
        hub.poller.handler(ReceivedMessage(f"m{i}", f"r{i}", body))  # never raises
    stats = hub.stats()
    # Each event is accounted for once: a pack (a JSON array) holds one per item.
    assert stats.dispatched + stats.duplicates + stats.malformed == sum(map(events_in, bodies)) + 1
    got = []
    while (event := sub.get(timeout=0)) is not None:
        got.append(event.seq)
    assert got[-1] == good_seq  # the good batch-mate arrived, after anything before it


# -- SSE query, headers and tokens --------------------------------------------------------

queries = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.tuples(
            st.sampled_from(["channel", "branch", "uploadId", "token", "lastEventId", "x"]),
            st.text(max_size=30) | st.sampled_from(["upload:main:x:*", "main", "upload:main:*"]),
        ),
        max_size=20,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
)
headers = st.text(max_size=40) | st.sampled_from(["²", "a:" + HUGE, "good:1", "Bearer tf1.x.y"])


@FUZZ
@given(queries, headers, headers)
def test_any_request_is_a_status_never_an_exception(
    query: str, last_event_id: str, authorization: str
) -> None:
    hub = ProgressHub(NoClient(), ProgressQueue("https://queue/progress.fifo"))  # type: ignore[arg-type]
    operator = issue_stream_token(SECRET, "upload:main:*")
    app = wsgi_app(hub, secret=SECRET, heartbeat=60)
    for auth in (authorization, f"Bearer {operator}"):
        statuses: list[str] = []
        environ = {
            "REQUEST_METHOD": "GET",
            "QUERY_STRING": query,
            "HTTP_LAST_EVENT_ID": last_event_id,
            "HTTP_AUTHORIZATION": auth,
        }
        body = app(environ, lambda status, _headers, seen=statuses: seen.append(status))
        assert statuses[0][:3] in {"200", "400", "401", "403"}, statuses
        if statuses[0].startswith("200"):
            assert next(iter(body)).startswith(b"event: snapshot")
            body.close()  # type: ignore[attr-defined]
    assert hub.stats().subscribers == 0


@FUZZ
@given(st.dictionaries(st.text(max_size=10), st.lists(st.text(max_size=40), max_size=3)))
def test_channel_from_query_is_a_channel_or_a_channel_error(query: dict[str, list[str]]) -> None:
    try:
        channel = channel_from_query(query)
    except TransflowError:
        return
    assert channel.startswith("upload:")


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=100) | json_values, st.text(max_size=40))
def test_any_token_is_a_grant_or_a_stream_token_error(token: Any, authorization: str) -> None:
    with pytest.raises(StreamTokenError):
        verify_stream_token(SECRET, token)
    found = bearer_token(authorization, {"token": [str(token)[:50]]})
    assert found is None or isinstance(found, str)


# -- configuration ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::transflow.UnknownConfigKeyWarning")
@FUZZ
@given(
    (json_values | mutated({"project": "demo", "branch": "main", "sqs": {}})).map(
        lambda v: json.dumps(v).encode()
    )
    | st.binary(max_size=80)
    | st.sampled_from([b"\xef\xbb\xbf{}", b"[" * 50_000, b'{"x": ' + HUGE.encode() + b"}"])
)
def test_any_config_file_is_a_config_or_a_config_error(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("config")) / "transflow.config.json"
    path.write_bytes(data)
    env = {"SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/p.fifo"}
    with contextlib.suppress(ConfigError):
        load_config(path, env=env)


# -- webhook verify -----------------------------------------------------------------------


@FUZZ
@given(
    st.binary(max_size=60) | st.text(max_size=60),
    st.dictionaries(
        st.sampled_from(["X-Transflow-Signature", "X-Transflow-Signature-256", "x"])
        | st.text(max_size=10),
        st.text(max_size=80) | json_values,
        max_size=3,
    ),
)
def test_webhook_verify_refuses_anything_unsigned_with_its_own_error(
    body: str | bytes, forged: dict[str, Any]
) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(SECRET, body, forged)
    if isinstance(body, str) and any("\ud800" <= c <= "\udfff" for c in body):
        return
    now = time.time()
    verify(SECRET, body, {**sign(SECRET, body, int(now))}, now=now)  # the genuine one passes


# -- the bridge's event parsing and the DLQ tools' decoding ---------------------------------


@FUZZ
@given(
    json_values
    | st.fixed_dictionaries({"Records": st.lists(json_values, max_size=4)})
    | st.fixed_dictionaries(
        {"Records": st.lists(st.dictionaries(st.text(max_size=12), json_values), max_size=4)}
    )
)
def test_any_event_parses_into_records_skips_and_failures(event: Any) -> None:
    parsed = parse_event(event)
    assert all(isinstance(r.key, str) for r in parsed.records)


@FUZZ
@given(st.lists(texts_for(GOOD_JOB), min_size=1, max_size=5), json_values)
def test_dlq_decoding_describes_any_body(bodies: list[str], attributes: Any) -> None:
    messages = [
        ReceivedMessage.from_sqs_message(
            {"MessageId": f"m{i}", "ReceiptHandle": "r", "Body": b, "Attributes": attributes}
        )
        for i, b in enumerate([*bodies, json.dumps(GOOD_JOB)])
    ]
    for message in messages:
        try:
            decoded: ProcessingJob | ClaimCheck | None = decode_job_message(message.body)
        except TransflowError:
            decoded = None
        job = describe_failed(message, decoded)
        assert isinstance(job, FailedJob)
        planned = announcement(job, now=time.time())
        assert planned is None or planned[0] == message.message_id
    outgoing, refused = plan_resend(messages)
    assert len(outgoing) + len(refused) == len(messages)  # each resent or refused, once
    assert "m" + str(len(bodies)) in {m for m, _ in outgoing}
