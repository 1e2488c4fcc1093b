"""Metrics in CloudWatch Embedded Metric Format from the processor and the hub: the lines on
stdout parse as EMF, and their values are what happened."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    lambda_record,
    make_buckets,
    make_queues,
    put_upload,
    wav_bytes,
)
from transflow import JobProcessor, ProgressHub, ProgressQueue, StepContext, TemplateRegistry
from transflow._aws.emf import emf_record, emit, enabled
from transflow._aws.retry import RetryPolicy
from transflow._wire.model import ProgressEvent, ProgressType

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws


def emf_lines(text: str) -> list[dict[str, Any]]:
    """Every EMF record of ``text``, each checked against the specification's shape."""
    records = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "_aws" not in record:
            continue
        meta = record["_aws"]
        assert isinstance(meta["Timestamp"], int)
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Namespace"] == "Transflow"
            for dimension_set in directive["Dimensions"]:
                assert all(isinstance(record[name], str) for name in dimension_set)
            for metric in directive["Metrics"]:
                assert set(metric) == {"Name", "Unit"}
                assert isinstance(record[metric["Name"]], int | float)
        records.append(record)
    return records


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


def test_the_processor_reports_jobs_per_template(
    aws: LocalAws,
    queues: Queues,
    s3: S3Client,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "shop-main-processor")
    registry = TemplateRegistry()

    @registry.template("ok").step("pass")
    def passes(ctx: StepContext) -> None:
        ctx.progress(50, "half")

    @registry.template("broken").step("fail")
    def fails(ctx: StepContext) -> None:
        raise RuntimeError("no")

    good = attrs.evolve(put_upload(s3, "up-good", [("a.wav", wav_bytes())], None), template_id="ok")
    bad = attrs.evolve(
        put_upload(s3, "up-bad", [("a.wav", wav_bytes())], None), template_id="broken"
    )
    proc = JobProcessor(
        registry,
        s3_client=aws.s3(),
        upload_bucket=UPLOADS,
        sqs_client=aws.sqs(),
        progress=ProgressQueue(queues.progress),
        output_bucket=OUTPUTS,
        retry_policy=RetryPolicy(attempts=2, initial=0.001, maximum=0.01),
    )
    capsys.readouterr()
    response = proc.handle(
        {
            "Records": [
                lambda_record(good.to_json(), "m-1", "up-good"),
                lambda_record(bad.to_json(), "m-2", "up-bad"),
            ]
        }
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}

    records = {r["Template"]: r for r in emf_lines(capsys.readouterr().out)}
    assert set(records) == {"ok", "broken"}
    assert records["ok"]["JobsCompleted"] == 1
    assert "JobsFailed" not in records["ok"]
    assert records["broken"]["JobsFailed"] == 1
    for record in records.values():
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Dimensions"] == [["Template"]]
        units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
        assert units["JobDuration"] == "Milliseconds"
        assert record["JobDuration"] >= 0
        assert record["branch"] == "main"


def test_the_hub_reports_subscribers_deliveries_and_lagging(
    sqs: SQSClient,
    queues: Queues,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRANSFLOW_METRICS", "emf")
    hub = ProgressHub(sqs, ProgressQueue(queues.progress), buffer_size=2)
    fast = hub.subscribe("upload:main:u1")
    slow = hub.subscribe("upload:main:*")
    for seq in range(1, 4):
        hub.dispatch(
            ProgressEvent.create(ProgressType.PROGRESS, upload_id="u1", branch="main", seq=seq)
        )
        fast.get(timeout=0)  # keeps up; the pattern subscriber never reads
    capsys.readouterr()
    hub.emit_metrics()
    hub.emit_metrics()  # nothing new since: deltas of zero
    first, second = emf_lines(capsys.readouterr().out)
    assert first["Component"] == "hub"
    assert first["ConnectedSubscribers"] == 1  # the lagging one was cut off
    assert first["EventsDelivered"] == 5  # three to the reader, two before the cut
    assert first["LaggedSubscribers"] == 1
    assert (second["EventsDelivered"], second["LaggedSubscribers"]) == (0, 0)
    assert slow.closed


def test_emf_is_written_only_where_collected() -> None:
    assert enabled({"AWS_LAMBDA_FUNCTION_NAME": "f"})
    assert enabled({"TRANSFLOW_METRICS": "emf"})
    assert not enabled({})
    assert not enabled({"AWS_LAMBDA_FUNCTION_NAME": "f", "TRANSFLOW_METRICS": "off"})
    record = emf_record({"A": (1, "Count")}, {"D": "x"}, timestamp_ms=5)
    assert record == {
        "_aws": {
            "Timestamp": 5,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Transflow",
                    "Dimensions": [["D"]],
                    "Metrics": [{"Name": "A", "Unit": "Count"}],
                }
            ],
        },
        "D": "x",
        "A": 1,
    }
    out = io.StringIO()
    emit({"A": (1, "Count")}, {"D": "x"}, stream=out)  # not enabled here: nothing
    assert out.getvalue() == ""
