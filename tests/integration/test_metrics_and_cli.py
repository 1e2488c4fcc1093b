"""Queue health and the `transflow` command, in-process against the moto server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from cfnlint.api import lint

from transflow import SqsConfig, TransflowConfig, count_requests, ensure_queues
from transflow.cli.app import main
from transflow.cli.local import LocalAws
from transflow.ops.health import HealthThresholds, health, queue_stats

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef
    from mypy_boto3_sqs import SQSClient

CONFIG = TransflowConfig(project="shop", branch="main", sqs=SqsConfig(max_receive_count=2))


@pytest.fixture
def cloudwatch(aws: LocalAws) -> CloudWatchClient:
    return aws.session().client("cloudwatch", endpoint_url=aws.endpoint_url)


def test_queue_stats_counts_visible_in_flight_and_dlq(
    sqs: SQSClient, cloudwatch: CloudWatchClient
) -> None:
    urls = ensure_queues(sqs, CONFIG)
    for i in range(5):
        sqs.send_message(
            QueueUrl=urls.processing,
            MessageBody="{}",
            MessageGroupId=f"g{i}",
            MessageDeduplicationId=str(i),
        )
    sqs.send_message(
        QueueUrl=urls.dlq, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId="d"
    )
    sqs.receive_message(QueueUrl=urls.processing, MaxNumberOfMessages=2)

    with count_requests(sqs, cloudwatch) as counter:
        stats = queue_stats(sqs, urls)
    assert (stats.processing.visible, stats.processing.in_flight) == (3, 2)
    assert stats.dlq.total == 1
    assert stats.progress.total == 0
    assert stats.oldest_age_sec is None
    assert counter.total("sqs") == 3
    assert counter.total("cloudwatch") == 0  # CloudWatch only when the caller allows it

    verdict = health(stats)
    assert not verdict.healthy
    assert [p.code for p in verdict.problems] == ["dlq-not-empty"]
    assert health(stats, HealthThresholds(max_dlq=1)).healthy


def test_oldest_message_age_comes_from_cloudwatch(
    sqs: SQSClient, cloudwatch: CloudWatchClient
) -> None:
    urls = ensure_queues(sqs, CONFIG)
    now = datetime.now(timezone.utc)
    dimensions: list[DimensionTypeDef] = [
        {"Name": "QueueName", "Value": "shop-main-processing.fifo"}
    ]
    for minutes, age, backlog in ((5, 400.0, 10.0), (3, 800.0, 20.0), (1, 1200.0, 30.0)):
        cloudwatch.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": dimensions,
                    "Value": age,
                    "Timestamp": now - timedelta(minutes=minutes),
                },
                {
                    "MetricName": "ApproximateNumberOfMessagesVisible",
                    "Dimensions": dimensions,
                    "Value": backlog,
                    "Timestamp": now - timedelta(minutes=minutes),
                },
            ],
        )
    with count_requests(cloudwatch) as counter:
        stats = queue_stats(sqs, urls, cloudwatch=cloudwatch, now=now)
    assert counter.total("cloudwatch") == 2
    assert stats.oldest_age_sec == 1200.0
    assert stats.backlog_trend == (10.0, 20.0, 30.0)
    codes = {p.code for p in health(stats, HealthThresholds(growth_points=3)).problems}
    assert codes == {"oldest-message-too-old", "backlog-growing"}
    assert health(stats, HealthThresholds(max_oldest_age_sec=1500, growth_points=4)).healthy


# -- the command --------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "transflow.config.json"
    path.write_text(
        json.dumps({"project": "shop", "branch": "main", "sqs": {"maxReceiveCount": 2}}),
        encoding="utf-8",
    )
    return path


def run(
    aws: LocalAws, config: Path, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = main([*args, "--config", str(config), "--endpoint-url", aws.endpoint_url])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json_reports_a_non_empty_dlq_as_unhealthy(
    aws: LocalAws, sqs: SQSClient, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(aws, config_file, "queues", "ensure", capsys=capsys)
    assert code == 0
    assert "created  shop-main-processing.fifo" in out

    code, out, err = run(aws, config_file, "status", "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["healthy"] is True

    dlq = sqs.get_queue_url(QueueName="shop-main-dlq.fifo")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId="1")
    code, out, _ = run(aws, config_file, "status", "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 1
    assert report["healthy"] is False
    assert report["queues"]["dlq"]["visible"] == 1
    assert [p["code"] for p in report["problems"]] == ["dlq-not-empty"]

    code, out, _ = run(aws, config_file, "status", capsys=capsys)
    assert code == 1
    assert "UNHEALTHY [dlq-not-empty]" in out
    assert "transflow dlq peek" in out
    code, out, _ = run(aws, config_file, "status", "--max-dlq", "1", capsys=capsys)
    assert code == 0
    assert "healthy" in out


def test_errors_are_one_line_without_a_traceback(
    aws: LocalAws, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(aws, config_file, "status", capsys=capsys)  # no queues yet
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("transflow: error: the processing queue shop-main-processing.fifo")
    assert "Traceback" not in err

    code, _, err = run(aws, config_file.parent / "missing.json", "status", capsys=capsys)
    assert code == 2
    assert "no such configuration file" in err
    assert err.count("\n") == 1


def test_queues_describe_and_delete(
    aws: LocalAws, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(aws, config_file, "queues", "ensure", capsys=capsys)
    code, out, _ = run(aws, config_file, "queues", "ensure", capsys=capsys)
    assert "no change" in out
    code, out, _ = run(aws, config_file, "queues", "describe", "--json", capsys=capsys)
    described = json.loads(out)
    assert [d["role"] for d in described] == ["processing", "progress", "dlq"]
    code, out, _ = run(aws, config_file, "queues", "describe", capsys=capsys)
    assert "shop-main-dlq.fifo" in out

    code, _, err = run(aws, config_file, "queues", "delete", capsys=capsys)
    assert code == 2
    assert "--yes" in err
    code, out, _ = run(aws, config_file, "queues", "delete", "--yes", capsys=capsys)
    assert code == 0
    assert out.count("deleted") == 3


def test_dlq_commands(
    aws: LocalAws, sqs: SQSClient, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = ensure_queues(sqs, CONFIG)
    for i in range(12):
        body = json.dumps(
            {
                "uploadId": f"u{i}",
                "templateId": "t",
                "branch": "main",
                "objects": [{"bucket": "b", "key": f"uploads/main/u{i}/f"}],
            }
        )
        sqs.send_message(
            QueueUrl=urls.dlq,
            MessageBody=body,
            MessageGroupId=f"u{i}",
            MessageDeduplicationId=str(i),
        )

    code, out, _ = run(aws, config_file, "dlq", "peek", "-n", "3", capsys=capsys)
    assert code == 0
    assert len(out.strip().splitlines()) == 4  # header and three jobs

    code, out, _ = run(aws, config_file, "dlq", "redrive", "--dry-run", capsys=capsys)
    assert "12 job(s) would move" in out
    code, out, err = run(aws, config_file, "dlq", "redrive", "--limit", "5", capsys=capsys)
    assert code == 0
    assert out.count("moved 5 job(s)") == 1
    assert "redrive:" not in err  # progress is drawn on a terminal only: one report here
    code, out, _ = run(aws, config_file, "dlq", "peek", "--json", "-n", "20", capsys=capsys)
    assert len(json.loads(out)) == 7

    code, _, err = run(aws, config_file, "dlq", "purge", capsys=capsys)
    assert code == 2
    assert "--yes" in err
    code, out, _ = run(aws, config_file, "dlq", "purge", "--yes", capsys=capsys)
    assert code == 0
    assert "about 7" in out


def test_iam_policy_and_sam_commands(
    aws: LocalAws, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        aws, config_file, "iam-policy", "--upload-bucket", "shop-uploads", capsys=capsys
    )
    assert code == 0
    documents = json.loads(out)
    assert set(documents) == {"bridge", "processor", "stream", "operator", "recovery", "uploads"}
    # The account comes from STS (moto's) when not given.
    assert "arn:aws:sqs:us-east-1:123456789012:shop-main-processing.fifo" in out

    target = tmp_path / "template.yaml"
    code, _, _ = run(
        aws, config_file, "sam", "--upload-bucket", "shop-uploads", "-o", str(target), capsys=capsys
    )
    assert code == 0
    text = target.read_text(encoding="utf-8")
    assert [str(m) for m in lint(text)] == []
    assert yaml.safe_load(text)["Resources"]["ProcessingQueue"]["Properties"]["QueueName"] == (
        "shop-main-processing.fifo"
    )

    code, _, _ = run(
        aws,
        config_file,
        "sam",
        "--upload-bucket",
        "shop-uploads",
        "--upload-origin",
        "https://shop.example.com",
        "--abort-incomplete-multipart-days",
        "2",
        "-o",
        str(target),
        "--force",
        capsys=capsys,
    )
    assert code == 0
    bucket = yaml.safe_load(target.read_text(encoding="utf-8"))["Resources"]["UploadBucket"]
    rules = bucket["Properties"]["CorsConfiguration"]["CorsRules"]
    assert rules[0]["AllowedOrigins"] == ["https://shop.example.com"]
    lifecycle = bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
