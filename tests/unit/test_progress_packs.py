"""Packing progress events into messages, pure: every event in exactly one pack, each
upload's in order, every pack within the size limit and readable back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transflow import EventFormatError, ProgressEvent
from transflow._aws.sqs_batch import BatchResult, EntryFailure
from transflow._wire.packs import pack_body, packed_items
from transflow.processing.packing import pack_messages, per_event
from transflow.processing.progress import progress_dedup_id

LIMIT = 1024

events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["1", "2"]), st.text(max_size=300)),
    min_size=1,
    max_size=30,
)


def build(spec: list[tuple[str, str, str]]) -> list[tuple[str, ProgressEvent, str]]:
    return [
        (
            f"k{n}",
            ProgressEvent.create("progress", upload_id=upload, branch="main", seq=n, message=text),
            token,
        )
        for n, (upload, token, text) in enumerate(spec)
    ]


@settings(max_examples=80, deadline=None)
@given(events)
def test_every_event_is_in_one_pack_in_order_within_the_limit(
    spec: list[tuple[str, str, str]],
) -> None:
    items = build(spec)
    packs = pack_messages(items, LIMIT, progress_dedup_id)
    assert sorted(k for p in packs for k in p.event_keys) == sorted(k for k, _, _ in items)
    unpacked: dict[tuple[str, str], list[int]] = {}
    for pack in packs:
        body = pack.message.body
        assert len(body.encode("utf-8", "surrogatepass")) <= LIMIT
        found = packed_items(body)
        decoded = ProgressEvent.all_from_json(body)
        assert found is None or len(found) >= 2  # one event travels as itself
        token = next(t for k, _, t in items if k == pack.key)
        assert {e.upload_id for e in decoded} == {pack.message.group_id}
        assert pack.message.dedup_id == progress_dedup_id(
            decoded[0].upload_id, token, decoded[0].seq or 0
        )
        unpacked.setdefault((decoded[0].upload_id, token), []).extend(e.seq or 0 for e in decoded)
    expected: dict[tuple[str, str], list[int]] = {}
    for _, event, token in items:
        expected.setdefault((event.upload_id, token), []).append(event.seq or 0)
    assert unpacked == expected


def test_a_failed_pack_fails_its_events_with_the_reason() -> None:
    packs = pack_messages(
        build([("a", "1", "x"), ("a", "1", "y"), ("b", "1", "z")]), LIMIT, progress_dedup_id
    )
    refused = EntryFailure(packs[0].key, "InvalidParameterValue", "no", True)
    result = per_event(BatchResult(succeeded=(packs[1].key,), failed=(refused,), calls=1), packs)
    assert result.succeeded == ("k2",)
    assert [(f.key, f.code) for f in result.failed] == [
        ("k0", "InvalidParameterValue"),
        ("k1", "InvalidParameterValue"),
    ]
    assert result.calls == 1


@pytest.mark.parametrize(
    "body",
    [
        "[",
        "[]",
        "[1",
        " [ ",
        # A publisher never packs one event, nor events of two uploads.
        '[{"uploadId": "u"}]',
        '[{"uploadId": "u"}, {"uploadId": "v"}]',
    ],
)
def test_a_broken_pack_is_a_typed_error(body: str) -> None:
    with pytest.raises(EventFormatError, match="progress event pack"):
        packed_items(body)


def test_a_single_event_body_is_not_a_pack() -> None:
    event = ProgressEvent.create("done", upload_id="u", branch="main", seq=1)
    assert packed_items(event.to_json()) is None
    assert json.loads(pack_body([event.to_json(), event.to_json()]))[1]["type"] == "done"


def test_all_from_json_reads_a_pack_or_one_event_and_refuses_what_is_neither() -> None:
    one = ProgressEvent.create("start", upload_id="u", branch="main", seq=1)
    two = ProgressEvent.create("done", upload_id="u", branch="main", seq=2)
    assert ProgressEvent.all_from_json(one.to_json()) == [one]
    assert ProgressEvent.all_from_json(pack_body([one.to_json(), two.to_json()]).encode()) == [
        one,
        two,
    ]
    with pytest.raises(EventFormatError, match="progress event pack"):
        ProgressEvent.all_from_json(f"[{one.to_json()}]")  # a publisher never packs one
    with pytest.raises(EventFormatError, match="progress event"):
        ProgressEvent.all_from_json(pack_body([one.to_json(), '{"type": "start"}']))
