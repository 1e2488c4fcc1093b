"""The worker: the processor behind a QueuePoller, in process and as ``transflow worker``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from examples.worker import build_worker
from tests.support.processes import stop_when_completed
from tests.support.streaming import wait_until
from transflow import (
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressQueue,
    S3ObjectRef,
    SqsConfig,
    StepContext,
    TemplateRegistry,
    TransflowConfig,
    ensure_queues,
)
from transflow._aws.poller import poller_client_config
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow._wire.keys import status_key
from transflow.cli.app import main
from transflow.cli.local import LocalAws
from transflow.processing.storage import read_status_record as load_status
from transflow.processing.worker import make_worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).parents[2]


def put_inputs(s3: S3Client, upload_id: str, contents: dict[str, bytes]) -> list[S3ObjectRef]:
    refs = []
    for name, data in contents.items():
        key = f"uploads/main/{upload_id}/{name}"
        s3.put_object(Bucket="uploads", Key=key, Body=data)
        refs.append(S3ObjectRef("uploads", key))
    return refs


def queue_job(sqs: SQSClient, url: str, job: ProcessingJob) -> None:
    result = send_batch(
        sqs,
        url,
        [(job.upload_id, OutgoingMessage(job.to_json(), job.upload_id, f"{job.upload_id}-1"))],
    )
    assert result.ok


def progress_types(sqs: SQSClient, url: str) -> list[str]:
    types: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            types.extend(e.type.value for e in ProgressEvent.all_from_json(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return types


@pytest.fixture
def pipeline(aws: LocalAws, s3: S3Client) -> TransflowConfig:
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="outputs")
    return TransflowConfig(project="wk", sqs=SqsConfig(max_receive_count=2))


def test_the_example_worker_runs_jobs_and_deletes_them(
    aws: LocalAws, s3: S3Client, pipeline: TransflowConfig
) -> None:
    sqs = aws.sqs(poller_client_config(2))
    urls = ensure_queues(sqs, pipeline)
    contents = {"a.txt": b"alpha" * 1000, "b.txt": b"beta"}
    job = ProcessingJob("up-1", "checksums", put_inputs(s3, "up-1", contents), "main")
    queue_job(sqs, urls.processing, job)

    worker = build_worker(
        sqs,
        s3,
        processing_queue_url=urls.processing,
        progress=ProgressQueue(urls.progress),
        upload_bucket="uploads",
        output_bucket="outputs",
        concurrency=2,
        wait_time_seconds=1,
    )
    with worker:
        wait_until(lambda: worker.stats().succeeded == 1, timeout=30, what="the job to succeed")
    assert worker.state == "stopped"

    status = load_status(s3, "outputs", status_key("main", "up-1"))
    assert status is not None
    assert status.completed
    manifest = json.loads(
        s3.get_object(Bucket="outputs", Key="outputs/main/up-1/checksums.json")["Body"].read()
    )
    assert manifest == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in contents.items()
    }
    attributes = sqs.get_queue_attributes(QueueUrl=urls.processing, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    types = progress_types(sqs, urls.progress)
    assert types[0] == "start"
    assert types[-1] == "done"


def test_a_job_that_keeps_failing_goes_to_the_dlq_through_visibility(
    aws: LocalAws, s3: S3Client, pipeline: TransflowConfig
) -> None:
    sqs = aws.sqs(poller_client_config(1))
    urls = ensure_queues(sqs, pipeline)
    registry = TemplateRegistry()
    broken = registry.template("broken", output_bucket="outputs")
    runs: list[int] = []

    @broken.step("explode")
    def explode(ctx: StepContext) -> None:
        runs.append(ctx.attempt)
        raise RuntimeError("this input is poison")

    job = ProcessingJob("up-2", "broken", put_inputs(s3, "up-2", {"x.bin": b"x"}), "main")
    queue_job(sqs, urls.processing, job)
    processor = JobProcessor(
        registry,
        s3_client=s3,
        upload_bucket="uploads",
        sqs_client=sqs,
        progress=ProgressQueue(urls.progress),
        max_receive_count=2,
    )
    worker = make_worker(
        processor,
        sqs,
        urls.processing,
        concurrency=1,
        wait_time_seconds=1,
        retry_delay=lambda _message: 0,
    )
    with worker:
        wait_until(
            lambda: "Messages" in sqs.receive_message(QueueUrl=urls.dlq, VisibilityTimeout=0),
            timeout=30,
            what="the job to reach the DLQ",
        )
    assert runs == [1, 2]  # maxReceiveCount deliveries, never a re-send
    status = load_status(s3, "outputs", status_key("main", "up-2"))
    assert status is not None
    assert status.error is not None
    assert "poison" in (status.message or "")


def test_the_worker_command_drains_on_sigterm(
    aws: LocalAws, s3: S3Client, pipeline: TransflowConfig, tmp_path: Path
) -> None:
    sqs = aws.sqs()
    urls = ensure_queues(sqs, pipeline)
    config = tmp_path / "transflow.config.json"
    config.write_text(json.dumps({"project": "wk", "sqs": {"maxReceiveCount": 2}}))
    job = ProcessingJob("up-3", "checksums", put_inputs(s3, "up-3", {"c.txt": b"gamma"}), "main")
    queue_job(sqs, urls.processing, job)
    # This checkout's src first: the editable install may point at another tree.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transflow",
            "worker",
            "--templates",
            "examples.worker:registry",
            "--upload-bucket",
            "uploads",
            "--output-bucket",
            "outputs",
            "--concurrency",
            "2",
            "--poll-wait",
            "1",
            "--config",
            str(config),
            "--endpoint-url",
            aws.endpoint_url,
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = stop_when_completed(
        process, s3, "outputs", status_key("main", "up-3"), what="the worker to complete the job"
    )
    assert process.returncode == 0, err
    assert "transflow-worker: stopped (1 received: 1 succeeded" in err  # one human line
    attributes = sqs.get_queue_attributes(QueueUrl=urls.processing, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_the_installed_command_finds_the_templates_module_in_the_working_directory(
    aws: LocalAws, s3: S3Client, pipeline: TransflowConfig, tmp_path: Path
) -> None:
    # The console script, not 'python -m': its sys.path starts with its own folder, so
    # before, 'examples' (in the working directory) was not found: rc 2 at once.
    script = Path(sys.executable).with_name("transflow")
    urls = ensure_queues(aws.sqs(), pipeline)
    config = tmp_path / "transflow.config.json"
    config.write_text(json.dumps({"project": "wk", "sqs": {"maxReceiveCount": 2}}))
    job = ProcessingJob("up-4", "checksums", put_inputs(s3, "up-4", {"d.txt": b"delta"}), "main")
    queue_job(aws.sqs(), urls.processing, job)
    # This checkout's src (the editable install may point at another tree), not the root.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AWS_ENDPOINT_URL": aws.endpoint_url}
    process = subprocess.Popen(
        [
            *(str(script), "worker", "--templates", "examples.worker:registry"),
            *("--output-bucket", "outputs", "--upload-bucket", "uploads"),
            *("--poll-wait", "1", "--config", str(config)),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = stop_when_completed(
        process, s3, "outputs", status_key("main", "up-4"), what="the worker to complete the job"
    )
    assert process.returncode == 0, err
    assert "1 received: 1 succeeded" in err
    # botocore's INFO lines are the command's noise, not its news.
    assert "Found credentials" not in err
    assert "botocore" not in err


def test_a_missing_output_bucket_is_one_line_at_start(
    aws: LocalAws,
    pipeline: TransflowConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ensure_queues(aws.sqs(), pipeline)
    config = tmp_path / "transflow.config.json"
    config.write_text(json.dumps({"project": "wk", "sqs": {"maxReceiveCount": 2}}))
    code = main(
        [
            *("worker", "--templates", "examples.worker:registry", "--output-bucket", "nobucket"),
            *("--upload-bucket", "uploads"),
            *("--config", str(config), "--endpoint-url", aws.endpoint_url),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert "output bucket 'nobucket' does not exist" in err
    assert "--output-bucket" in err
