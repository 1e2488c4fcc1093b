"""SSE encoding against an independent WHATWG parser, by hand and with hypothesis."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.streaming import SseEvent, SseParser, parse_all
from transflow import ChannelError, ProgressEvent, SseEncodingError, SubscriptionClosedError
from transflow.streaming.sse import HEADERS, astream, channel_from_query, comment, encode, stream


def normalised(data: str) -> str:
    return data.replace("\r\n", "\n").replace("\r", "\n")


def test_data_is_split_on_cr_lf_and_crlf() -> None:
    raw = encode("one\r\ntwo\rthree\nfour", event="note", id="u:1", retry=2500)
    assert raw == (
        b"event: note\nid: u:1\nretry: 2500\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
    )
    parser = SseParser()
    assert parser.feed(raw.decode()) == [SseEvent("note", "one\ntwo\nthree\nfour", "u:1")]
    assert parser.retry == 2500


def test_leading_spaces_colons_and_empty_lines_survive() -> None:
    data = "  indented\n\n: not a comment\ndata: nested\n"
    assert parse_all(encode(data)) == [SseEvent("message", data, "")]


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "a\nb"), ("id", "a\rb"), ("id", "a\x00b"), ("event", "x\ny"), ("event", "\r")],
)
def test_newlines_and_nul_are_kept_out_of_id_and_event(field: str, value: str) -> None:
    with pytest.raises(SseEncodingError, match="CR, LF or NUL"):
        encode("x", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("retry", [-1, True, 1.5, "10"])
def test_retry_must_be_a_non_negative_integer(retry: object) -> None:
    with pytest.raises(SseEncodingError, match="retry"):
        encode("x", retry=retry)  # type: ignore[arg-type]


def test_data_must_be_text() -> None:
    with pytest.raises(SseEncodingError, match="str"):
        encode(b"bytes")  # type: ignore[arg-type]


def test_comments_are_ignored_by_clients() -> None:
    assert comment() == b":\n"
    assert comment("a\nb") == b": a\n: b\n"
    assert parse_all(comment("keep-alive") + encode("x") + comment()) == [
        SseEvent("message", "x", "")
    ]


def test_headers_allow_streaming_through_proxies_and_http2() -> None:
    names = {name.lower(): value for name, value in HEADERS}
    assert names["content-type"].startswith("text/event-stream")
    assert names["cache-control"] == "no-cache"
    assert names["x-accel-buffering"] == "no"
    assert "connection" not in names


def test_channel_query() -> None:
    assert channel_from_query({"channel": ["upload:main:u1"]}) == "upload:main:u1"
    assert channel_from_query({"channel": ["upload:main:*"]}) == "upload:main:*"
    assert channel_from_query({"branch": ["main"]}) == "upload:main:*"
    assert channel_from_query({"branch": ["main"], "uploadId": ["u1"]}) == "upload:main:u1"
    for bad in (
        {},
        {"channel": ["uploads:x:y"]},
        {"channel": ["upload:main"]},
        {"branch": ["a:b"]},
    ):
        with pytest.raises(ChannelError):
            channel_from_query(bad)


text = st.text(st.characters(codec="utf-8"), max_size=200)
field = st.text(st.characters(codec="utf-8", blacklist_characters="\r\n\x00"), max_size=40)


@given(
    data=text.filter(lambda d: d != ""),
    event=field.filter(lambda e: e != ""),
    id_=field,
    chunk=st.integers(1, 17),
)
def test_round_trip_through_a_spec_parser_in_any_chunking(
    data: str, event: str, id_: str, chunk: int
) -> None:
    raw = (encode(data, event=event, id=id_) + encode("after")).decode("utf-8")
    parser = SseParser()
    events: list[SseEvent] = []
    for start in range(0, len(raw), chunk):
        events.extend(parser.feed(raw[start : start + chunk]))
    # The parser strips one space after the colon; encode always writes one, so a value's
    # own leading space survives. CR and CRLF in data come back as LF, as the spec says.
    assert events == [
        SseEvent(event, normalised(data), id_),
        SseEvent("message", "after", id_),
    ]


@given(bad=st.text(min_size=1).map(lambda s: s + "\n"))
def test_any_id_with_a_newline_is_refused(bad: str) -> None:
    with pytest.raises(SseEncodingError):
        encode("x", id=bad)


def _event(seq: int) -> ProgressEvent:
    return ProgressEvent.create(
        "progress",
        upload_id="u",
        branch="main",
        timestamp=dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc),
        seq=seq,
    )


class FakeClosedSubscription:
    """A pure unit of the stream functions: no hub needed to check their framing."""

    channel = "upload:main:u"

    def __init__(self, events: list[ProgressEvent | None]) -> None:
        self.events = list(events)
        self.closed = False

    def snapshot_json(self) -> str:
        return '{"state":"queued"}'

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        if not self.events:
            raise SubscriptionClosedError("done")
        return self.events.pop(0)

    async def aget(self, timeout: float | None = None) -> ProgressEvent | None:
        return self.get(timeout)

    def close(self) -> None:
        self.closed = True


def test_stream_and_astream_frame_the_same_bytes() -> None:
    events = [_event(1), None, _event(2)]
    sync_sub = FakeClosedSubscription(events)
    sync = b"".join(stream(sync_sub, retry=100))
    async_sub = FakeClosedSubscription(events)

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in astream(async_sub, retry=100)])

    assert asyncio.run(collect()) == sync
    assert sync_sub.closed
    assert async_sub.closed
    parsed = parse_all(sync)
    assert [e.type for e in parsed] == ["snapshot", "message", "message"]
    assert b"\n:\n" in sync  # the heartbeat for the None (a timeout)
