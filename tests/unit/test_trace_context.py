"""The trace context: W3C traceparent rules, AWSTraceHeader, where it travels on the wire
(metadata, jobs, events) and that a trace never changes what a job is."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.uploads import policy_of
from transflow import (
    ProcessingJob,
    ProgressEvent,
    S3ObjectRef,
    TraceContext,
    TraceContextError,
    TransflowError,
    configure_logging,
    create_upload,
    read_upload_metadata,
)
from transflow._aws.logs import log_context
from transflow._wire.trace import from_aws_trace_header, parse_trace
from transflow.ingest.metadata import MAX_METADATA_BYTES
from transflow.processing.status import job_fingerprint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def job(**trace: str) -> ProcessingJob:
    return ProcessingJob(
        upload_id="up-1",
        template_id="t",
        objects=[S3ObjectRef("uploads", "uploads/main/up-1/a.wav")],
        branch="main",
        **trace,  # type: ignore[arg-type]
    )


def test_a_traceparent_is_read_as_w3c_writes_it() -> None:
    trace = TraceContext(PARENT, "vendor=abc")
    assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.span_id == "00f067aa0ba902b7"
    assert trace.sampled
    child = trace.child()
    assert child.trace_id == trace.trace_id
    assert child.span_id != trace.span_id
    assert child.tracestate == "vendor=abc"
    new = TraceContext.new()
    assert new.trace_id != TraceContext.new().trace_id


@pytest.mark.parametrize(
    ("traceparent", "tracestate", "problem"),
    [
        ("not-a-trace", None, "is not '00-"),
        (PARENT.upper(), None, "lower case"),
        ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None, "all-zero"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", None, "all-zero"),
        ("ff" + PARENT[2:], None, "invalid version"),
        (PARENT + "-extra", None, "invalid version"),
        (PARENT, "no equals sign", "key=value"),
        (PARENT, "a=" + "x" * 600, "over 512"),
    ],
)
def test_a_malformed_context_is_a_typed_error_saying_what_is_wrong(
    traceparent: str, tracestate: str | None, problem: str
) -> None:
    with pytest.raises(TraceContextError, match=problem) as caught:
        TraceContext(traceparent, tracestate)
    assert isinstance(caught.value, TransflowError)
    assert isinstance(caught.value, ValueError)


@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=80)))
def test_reading_a_carried_context_never_raises(traceparent: str, tracestate: str | None) -> None:
    # A trace must never fail the work it follows: what cannot be read is None.
    parsed = parse_trace(traceparent, tracestate)
    if parsed is not None:
        assert parsed.traceparent == traceparent
    assert from_aws_trace_header(traceparent) is None or "Root=" in traceparent
    from_header = TraceContext.from_headers({"traceparent": traceparent})
    assert from_header in (None, parse_trace(traceparent.strip()))


def test_from_headers_takes_a_request_context_in_any_case() -> None:
    found = TraceContext.from_headers({"TraceParent": PARENT, "TRACESTATE": "a=1"})
    assert found == TraceContext(PARENT, "a=1")
    assert TraceContext.from_headers({"traceparent": "garbage"}) is None
    assert TraceContext.from_headers({}) is None


def test_an_aws_trace_header_is_the_same_trace_in_w3c_form() -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    trace = from_aws_trace_header(header)
    assert trace is not None
    assert trace.trace_id == "5759e988bd862e3fe1be46a994272793"
    assert trace.span_id == "53995c3f42cd8ad8"
    assert trace.sampled
    assert from_aws_trace_header("Root=1-5759e988-bd862e3fe1be46a994272793") is None
    assert from_aws_trace_header("Root=x;Parent=53995c3f42cd8ad8") is None


def test_jobs_and_events_carry_the_context_and_old_ones_still_parse() -> None:
    old = job()
    assert "traceparent" not in old.to_dict()
    assert ProcessingJob.from_json(old.to_json()) == old
    traced = job(traceparent=PARENT, tracestate="a=1")
    assert traced.to_dict()["traceparent"] == PARENT
    assert traced.to_dict()["tracestate"] == "a=1"
    assert ProcessingJob.from_json(traced.to_json()) == traced
    # A malformed one still parses: the processor ignores it and runs the job.
    assert ProcessingJob.from_dict({**old.to_dict(), "traceparent": "junk"}).traceparent == "junk"

    event = ProgressEvent.create("progress", upload_id="up-1", branch="main", traceparent=PARENT)
    assert event.to_dict()["traceparent"] == PARENT
    assert ProgressEvent.from_json(event.to_json()) == event
    untraced = ProgressEvent.create("progress", upload_id="up-1", branch="main")
    assert "traceparent" not in untraced.to_dict()


def test_the_trace_does_not_change_what_a_job_is() -> None:
    # A bridge that sends the job again continues the trace from a new span; the redelivery
    # must still be the same job (its checkpoints and completion record apply).
    first = job(traceparent=PARENT)
    again = job(traceparent=TraceContext(PARENT).child().traceparent, tracestate="a=1")
    assert job_fingerprint(first) == job_fingerprint(again) == job_fingerprint(job())


def test_create_upload_signs_the_trace_into_the_metadata(signer: S3Client) -> None:
    ticket = create_upload(
        signer,
        bucket="uploads",
        branch="main",
        template_id="t",
        files=["a.wav"],
        trace=TraceContext(PARENT, "vendor=abc"),
    )
    fields = ticket.files[0].fields
    assert fields["x-amz-meta-traceparent"] == PARENT
    assert fields["x-amz-meta-tracestate"] == "vendor=abc"
    pinned = [c for c in policy_of(dict(fields))["conditions"] if isinstance(c, dict)]
    assert {"x-amz-meta-traceparent": PARENT} in pinned
    meta = read_upload_metadata("k", {k.removeprefix("x-amz-meta-"): v for k, v in fields.items()})
    assert meta.trace == TraceContext(PARENT, "vendor=abc")


def test_create_upload_takes_a_string_and_starts_a_trace_without_one(signer: S3Client) -> None:
    given_one = create_upload(
        signer, bucket="b", branch="main", template_id="t", files=["a"], trace=PARENT
    )
    assert given_one.files[0].fields["x-amz-meta-traceparent"] == PARENT
    fresh = create_upload(signer, bucket="b", branch="main", template_id="t", files=["a", "b"])
    parents = {f.fields["x-amz-meta-traceparent"] for f in fresh.files}
    assert len(parents) == 1  # one trace per upload, not per file
    assert parse_trace(parents.pop()) is not None
    with pytest.raises(TraceContextError, match="traceparent 'junk'"):
        create_upload(signer, bucket="b", branch="main", template_id="t", files=["a"], trace="junk")


def test_a_tracestate_that_would_break_the_metadata_limit_is_left_out(
    signer: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    state = ",".join(f"k{i}=" + "v" * 12 for i in range(30))  # 30 members, 479 characters
    big = {"note": "x" * (MAX_METADATA_BYTES - 700)}
    ticket = create_upload(
        signer,
        bucket="b",
        branch="main",
        template_id="t",
        files=["a"],
        fields=big,
        trace=TraceContext(PARENT, state),
    )
    fields = ticket.files[0].fields
    assert fields["x-amz-meta-traceparent"] == PARENT
    assert "x-amz-meta-tracestate" not in fields
    assert "tracestate" in caplog.text
    assert "left out" in caplog.text


def test_a_malformed_traceparent_in_metadata_does_not_fail_the_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meta = read_upload_metadata("k", {"templateid": "t", "traceparent": "junk"})
    assert meta.template_id == "t"
    assert meta.trace is None
    assert "malformed traceparent" in caplog.text


def test_log_lines_carry_the_job_fields_as_json() -> None:
    out = io.StringIO()
    logger = logging.getLogger("transflow.test_trace_json")
    logger.propagate = False
    try:
        configure_logging(json=True, stream=out, logger=logger, level=logging.INFO)
        with log_context(upload_id="up-1", attempt=2, trace_id="abc"), log_context(step="s1"):
            logger.info("hello %s", "there")
        logger.info("outside")
        logger.error("failed", exc_info=ValueError("boom"))
    finally:
        logger.handlers.clear()
        logger.propagate = True
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "hello there"
    assert (first["upload_id"], first["attempt"], first["step"], first["trace_id"]) == (
        "up-1",
        2,
        "s1",
        "abc",
    )
    assert first["level"] == "INFO"
    assert "upload_id" not in second
    assert "ValueError: boom" in third["exception"]


def test_text_log_lines_carry_the_fields_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFLOW_LOG_FORMAT", "text")
    out = io.StringIO()
    logger = logging.getLogger("transflow.test_trace_text")
    logger.propagate = False
    try:
        configure_logging(stream=out, logger=logger)
        with log_context(upload_id="up-1", step="s1"):
            logger.warning("slow")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert out.getvalue().rstrip().endswith("slow [upload_id=up-1 step=s1]")


def test_without_opentelemetry_loaded_nothing_of_it_is_imported() -> None:
    # The SDK is installed here (the dev extra): the handlers must still not import it, and
    # a job's spans must pass the carried context through without it.
    code = (
        "import sys\n"
        "from transflow import GroupingBridge, JobProcessor, ProgressHub, create_upload\n"
        "from transflow._aws.tracing import span, current_trace\n"
        "from transflow._wire.trace import TraceContext\n"
        "parent = TraceContext.new()\n"
        "with span('x', parent=parent) as s:\n"
        "    assert s.context == parent\n"
        "assert current_trace() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"
