"""What a completion record keeps of its ``done`` event and its message, what a redelivery
makes of it, and the webhook's delivery id: pure values, no AWS."""

from __future__ import annotations

import json

import attrs
from hypothesis import given
from hypothesis import strategies as st

from transflow import ProcessingJob, S3ObjectRef
from transflow.processing import attempt as attempts
from transflow.processing.attempt import DoneIdentity, replayed_done
from transflow.processing.status import AssemblyStatus, webhook_delivery_id

JOB = ProcessingJob(
    upload_id="up-1",
    template_id="audio",
    objects=(S3ObjectRef("in", "uploads/main/up-1/a.wav"),),
    branch="main",
)
NOW = "2026-11-28T10:00:00.000Z"


def completed(message_id: str | None = "m-1", attempt: int = 1) -> AssemblyStatus:
    state = attempts.begin(JOB, attempt, now=NOW, message_id=message_id).located("out")
    done = DoneIdentity(1_796_000_000_000_000, str(attempt))
    return attempts.complete(state, {}, duration=0.5, now=NOW, done=done).record


def test_the_completion_record_keeps_its_message_and_its_done() -> None:
    record = completed()
    assert (record.message_id, record.done_seq, record.done_token) == (
        "m-1",
        1_796_000_000_000_000,
        "1",
    )
    data = json.loads(record.to_json())
    assert (data["message_id"], data["done_seq"], data["done_token"]) == (
        "m-1",
        1_796_000_000_000_000,
        "1",
    )
    assert AssemblyStatus.from_json(record.to_json()) == record


def test_a_redelivery_of_the_same_message_sends_the_same_done() -> None:
    assert replayed_done(completed(), "m-1") == DoneIdentity(1_796_000_000_000_000, "1")


def test_another_message_with_the_same_job_gets_a_done_of_its_own() -> None:
    assert replayed_done(completed(), "m-2") is None
    assert replayed_done(completed(), None) is None  # run_job without a message
    assert replayed_done(completed(message_id=None), None) is None


def test_a_record_of_an_older_version_is_answered_as_before() -> None:
    # Written before the record kept its done: no message id, no done; read as none.
    data = json.loads(completed().to_json())
    for name in ("message_id", "done_seq", "done_token"):
        del data[name]
    old = AssemblyStatus.from_json(json.dumps(data))
    assert (old.message_id, old.done_seq, old.done_token) == (None, None, None)
    assert replayed_done(old, "m-1") is None
    # A message id without a done (never written so, but read defensively): as before.
    assert replayed_done(attrs.evolve(completed(), done_seq=None), "m-1") is None


def test_a_record_of_a_newer_version_is_read() -> None:
    data = json.loads(completed().to_json())
    data["a_field_of_a_later_version"] = {"anything": 1}
    assert AssemblyStatus.from_json(json.dumps(data)) == completed()


def test_the_webhook_delivery_id_is_the_same_for_the_same_outcome() -> None:
    record = completed()
    delivery = webhook_delivery_id(record)
    assert len(delivery) == 32
    assert int(delivery, 16) >= 0
    # What a replay posts is the record read back from S3.
    assert webhook_delivery_id(AssemblyStatus.from_json(record.to_json())) == delivery
    # Not part of the outcome: which message or done carried it, when it was last updated.
    assert webhook_delivery_id(attrs.evolve(record, message_id="m-9", last_updated="x")) == (
        delivery
    )


def test_the_webhook_delivery_id_differs_for_another_outcome_or_job() -> None:
    record = completed()
    others = [
        attrs.evolve(record, attempt=2),
        attrs.evolve(record, ok=None, error="STEP_FAILED"),
        attrs.evolve(record, ok="ASSEMBLY_CANCELED"),
        attrs.evolve(record, execution_start="2026-11-28T10:05:00.000Z"),
        attrs.evolve(record, job_fingerprint="0" * 64),
        attrs.evolve(record, upload_id="up-2"),
    ]
    ids = {webhook_delivery_id(r) for r in [record, *others]}
    assert len(ids) == len(others) + 1


@given(st.text(), st.text())
def test_the_webhook_delivery_id_fields_cannot_run_into_each_other(a: str, b: str) -> None:
    # Joined with newlines: moving text from one field to the next changes the id, except
    # where the fields hold the newline that joins them.
    record = completed()
    left = attrs.evolve(record, ok=a + b or None, error=None)
    right = attrs.evolve(record, ok=a or None, error=b or None)
    if b and "\n" not in a + b:
        assert webhook_delivery_id(left) != webhook_delivery_id(right)
