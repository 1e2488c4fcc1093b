"""One trace from upload to browser, on the moto server: create_upload, the browser's POST,
the bridge, the job, its steps and the progress events share one trace; with
OpenTelemetry, the spans form one connected tree, linked across the queues."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.bridge import bridge as make_bridge
from tests.support.bridge import (
    jobs_on,
    lambda_event,
    notifying_bucket,
    post_files,
    receive_notifications,
)
from tests.support.pipeline import drain_events, lambda_record, make_queues
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressQueue,
    StepContext,
    StepRetry,
    TemplateRegistry,
    UploadFile,
    configure_logging,
    create_upload,
)
from transflow._aws.retry import RetryPolicy
from transflow._wire.trace import TraceContext, parse_trace
from transflow.cli.local import LocalAws, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
AWS_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
BRIDGE_AWS_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1111222233334444;Sampled=1"
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


class Flaky:
    """Fails its first call with a transient error: one retry of the step."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ctx: StepContext) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionResetError("first try fails")
        logging.getLogger("transflow.test_trace.step").info("step %s ran", ctx.step)


def pipeline(aws: LocalAws) -> tuple[S3Client, SQSClient, Any, Any, JobProcessor, str]:
    s3 = aws.s3(local_client_config(signature_version="s3v4"))
    sqs = aws.sqs()
    events_url = notifying_bucket(sqs, s3)
    queues = make_queues(sqs)
    registry = TemplateRegistry()
    template = registry.template("traced")

    @template.step("probe")
    def probe(ctx: StepContext) -> None:
        ctx.progress(50, "half way")

    template.step("encode", retry=StepRetry(on=(ConnectionResetError,), initial=0.001))(Flaky())
    processor = JobProcessor(
        registry,
        s3_client=s3,
        upload_bucket="uploads",
        sqs_client=sqs,
        progress=ProgressQueue(queues.progress),
        output_bucket="uploads",
        retry_policy=FAST,
    )
    bridge = make_bridge(sqs, s3, queues.processing, upload_bucket="uploads")
    return s3, sqs, queues, bridge, processor, events_url


def upload_and_process(
    aws: LocalAws, trace_arg: TraceContext | None = None, *, aws_header: str | None = None
) -> tuple[ProcessingJob, list[ProgressEvent], str]:
    """Run one upload through bridge and processor; the job, its events and its traceparent
    as create_upload signed it."""
    s3, sqs, queues, bridge, processor, events_url = pipeline(aws)
    ticket = create_upload(
        s3,
        bucket="uploads",
        branch="main",
        template_id="traced",
        files=[UploadFile("a.txt")],
        trace=trace_arg,
    )
    post_files(ticket.files, [b"content"])
    notification = lambda_event(receive_notifications(sqs, events_url, 1))
    if aws_header is not None:  # as Lambda passes it when X-Ray traced the sender
        notification["Records"][0]["attributes"]["AWSTraceHeader"] = BRIDGE_AWS_HEADER
    assert bridge.lambda_handler(notification) == {"batchItemFailures": []}
    (job,) = jobs_on(sqs, queues.processing)
    record = lambda_record(job.to_json(), "m-1", job.upload_id)
    if aws_header is not None:
        record["attributes"]["AWSTraceHeader"] = aws_header
    assert processor.handle({"Records": [record]}) == {"batchItemFailures": []}
    events = drain_events(sqs, queues.progress)
    return job, events, ticket.files[0].fields["x-amz-meta-traceparent"]


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def test_one_upload_gives_one_connected_trace(aws: LocalAws, spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("host-app")
    with tracer.start_as_current_span("host.create-upload-request") as host:
        # No trace argument: the host's current span is continued.
        job, events, signed = upload_and_process(aws, aws_header=AWS_HEADER)
    finished = spans.get_finished_spans()
    host_ctx = host.get_span_context()
    # (flags aside: the SDK may set W3C level 2's random-trace-id bit)
    assert signed[:52] == f"00-{host_ctx.trace_id:032x}-{host_ctx.span_id:016x}"

    (bridge,) = by_name(finished, "transflow.bridge")
    (job_span,) = by_name(finished, "transflow.job")
    steps = by_name(finished, "transflow.step")
    publishes = by_name(finished, "transflow.publish")
    assert [s.attributes["transflow.step"] for s in steps if s.attributes] == ["probe", "encode"]
    assert publishes
    # One trace: every span of the upload shares the host's trace id.
    ours = [bridge, job_span, *steps, *publishes]
    assert {s.context.trace_id for s in ours} == {host_ctx.trace_id}
    # Connected: host -> bridge -> (queue) -> job -> steps; publishes under job or a step.
    assert bridge.parent is not None
    assert bridge.parent.span_id == host_ctx.span_id
    assert job_span.parent is not None
    assert job_span.parent.span_id == bridge.context.span_id
    assert all(s.parent is not None and s.parent.span_id == job_span.context.span_id for s in steps)
    under = {job_span.context.span_id, *(s.context.span_id for s in steps)}
    assert all(p.parent is not None and p.parent.span_id in under for p in publishes)
    # Linked across the processing queue: to the bridge's span, and to SQS's AWSTraceHeader.
    linked = {(link.context.trace_id, link.context.span_id) for link in job_span.links}
    assert (bridge.context.trace_id, bridge.context.span_id) in linked
    assert (0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8) in linked
    (bridge_link,) = bridge.links
    assert bridge_link.context.trace_id == 0x5759E988BD862E3FE1BE46A994272793
    assert bridge_link.context.span_id == 0x1111222233334444
    # The job message carries the bridge's span; the encode step's one retry is recorded.
    assert job.traceparent is not None
    assert (
        job.traceparent[:52] == f"00-{bridge.context.trace_id:032x}-{bridge.context.span_id:016x}"
    )
    (encode,) = [s for s in steps if s.attributes and s.attributes["transflow.step"] == "encode"]
    assert encode.attributes is not None
    assert encode.attributes["transflow.retries"] == 1

    # Every event reaches the browser with the trace; a step's events name its span.
    assert events
    assert all(e.traceparent is not None for e in events)
    step_span_ids = {
        f"{s.context.span_id:016x}": s.attributes["transflow.step"] for s in steps if s.attributes
    }
    for event in events:
        carried = parse_trace(event.traceparent)
        assert carried is not None
        assert carried.trace_id == f"{host_ctx.trace_id:032x}"
        if event.type.value in ("step:start", "step:done", "progress"):
            assert step_span_ids[carried.span_id] == event.step
        if event.type.value in ("start", "done"):
            assert carried.span_id == f"{job_span.context.span_id:016x}"


def test_without_spans_logs_and_events_share_the_upload_trace(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRANSFLOW_OTEL", "off")
    monkeypatch.setenv("TRANSFLOW_METRICS", "emf")
    given = TraceContext.new()
    out = io.StringIO()
    logger = logging.getLogger("transflow")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.propagate = False
    try:
        configure_logging(json=True, stream=out, logger=logger, level=logging.INFO)
        job, events, signed = upload_and_process(aws, given)
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    assert signed == given.traceparent
    # Without spans, the context passes through unchanged: the upload's own.
    assert job.traceparent == given.traceparent
    assert {e.traceparent for e in events} == {given.traceparent}

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    ran = [line for line in lines if line["message"] == "step encode ran"]
    assert len(ran) == 1
    assert ran[0]["upload_id"] == job.upload_id
    assert ran[0]["attempt"] == 1
    assert ran[0]["step"] == "encode"
    assert ran[0]["trace_id"] == given.trace_id
    retried = [line for line in lines if "ConnectionResetError" in line["message"]]
    assert retried
    assert all(line["step"] == "encode" for line in retried)

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "Step" in line]
    per_step = {m["Step"]: m for m in metrics if "StepDuration" in m}
    assert set(per_step) == {"probe", "encode"}
    assert per_step["encode"]["StepRetries"] == 1
    assert per_step["probe"]["StepRetries"] == 0
    assert per_step["encode"]["Template"] == "traced"
    dims = per_step["encode"]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert dims == [["Step", "Template"]]  # bounded: registered templates and their steps


def test_a_job_without_a_trace_gets_one_for_all_its_events(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A job from an older bridge (no traceparent), or one whose traceparent is malformed:
    # it runs, and its events still share one trace id.
    monkeypatch.setenv("TRANSFLOW_OTEL", "off")
    s3, sqs, queues, _, processor, _ = pipeline(aws)
    s3.put_object(Bucket="uploads", Key="uploads/main/old-1/a.txt", Body=b"x")
    old = ProcessingJob.from_dict(
        {
            "uploadId": "old-1",
            "templateId": "traced",
            "branch": "main",
            "objects": [{"bucket": "uploads", "key": "uploads/main/old-1/a.txt"}],
            "traceparent": "not-a-traceparent",
        }
    )
    record = lambda_record(old.to_json(), "m-old", old.upload_id)
    assert processor.handle({"Records": [record]}) == {"batchItemFailures": []}
    events = drain_events(sqs, queues.progress)
    assert events[-1].type.value == "done"
    traces = {parse_trace(e.traceparent) for e in events}
    assert None not in traces
    assert len({t.trace_id for t in traces if t is not None}) == 1
    ignored = [r for r in caplog.records if "malformed traceparent" in r.getMessage()]
    assert len(ignored) == 1  # logged once, at WARNING
    assert ignored[0].levelno == logging.WARNING
