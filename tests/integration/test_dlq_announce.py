"""A dead-lettered upload ends, for whoever watches it, on a final error, even when the
processor never saw the delivery that sent it to the dead-letter queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.streaming import wait_until
from transflow import (
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    S3ObjectRef,
    TransflowConfig,
    ensure_queues,
)
from transflow._aws.poller import poller_client_config
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow.cli.app import main
from transflow.cli.local import LocalAws
from transflow.ops.announce import announce
from transflow.streaming.snapshot import UploadState, UploadStatus, fold_event

if TYPE_CHECKING:
    from pathlib import Path


def job(upload_id: str) -> ProcessingJob:
    key = f"uploads/main/{upload_id}/a.wav"
    return ProcessingJob(upload_id, "audio", [S3ObjectRef("uploads", key)], "main")


def test_announce_tells_the_watcher_once_and_leaves_the_dlq_alone(aws: LocalAws) -> None:
    sqs = aws.sqs(poller_client_config(2))
    urls = ensure_queues(sqs, TransflowConfig(project="an"))
    dead = [job("up-a"), job("up-b")]
    send_batch(
        sqs,
        urls.dlq,
        [(j.upload_id, OutgoingMessage(j.to_json(), j.upload_id, j.upload_id)) for j in dead]
        + [("junk", OutgoingMessage("{not a job", "junk", "junk"))],
    )
    # The browser last heard "retrying": the processor did not know it was the last try.
    retrying = ProgressEvent.create(
        "error", upload_id="up-a", branch="main", seq=1, extra={"retrying": True}
    )
    send_batch(sqs, urls.progress, [("r", OutgoingMessage(retrying.to_json(), "up-a", "r"))])

    hub = ProgressHub(sqs, ProgressQueue(urls.progress), wait_time_seconds=1)
    # Subscribed before the hub starts: a hub that received "retrying" before the
    # subscription existed would fold it into the snapshot, never hand it to get() (CI).
    watching = hub.subscribe("upload:main:up-a")
    with hub, watching:
        status = [UploadStatus("upload:main:up-a")]
        seen: list[ProgressEvent] = []

        def fold_until(state: UploadState) -> bool:
            while (event := watching.get(timeout=0.1)) is not None:
                seen.append(event)
                status[0] = fold_event(status[0], event)
            return status[0].state is state

        wait_until(lambda: fold_until(UploadState.RETRYING), timeout=20, what="retrying")
        first = announce(sqs, urls.dlq, ProgressQueue(urls.progress))
        wait_until(lambda: fold_until(UploadState.ERROR), timeout=20, what="the final error")

    assert sorted(first.announced) == ["up-a", "up-b"]
    assert len(first.skipped) == 1  # the junk body names no upload
    finals = [e for e in seen if e.extra.get("deadLettered")]
    assert len(finals) == 1
    assert "dead-lettered after" in (finals[0].message or "")
    assert status[0].error is not None
    # Nothing was consumed: the three messages are still in the dead-letter queue.
    attributes = sqs.get_queue_attributes(
        QueueUrl=urls.dlq, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "3"


def test_the_announce_command(
    aws: LocalAws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = aws.sqs()
    urls = ensure_queues(sqs, TransflowConfig(project="an"))
    dead = job("up-c")
    send_batch(sqs, urls.dlq, [("c", OutgoingMessage(dead.to_json(), "up-c", "c"))])
    config = tmp_path / "transflow.config.json"
    config.write_text('{"project": "an", "sqs": {}}')
    code = main(["dlq", "announce", "--config", str(config), "--endpoint-url", aws.endpoint_url])
    assert code == 0
    assert "announced 1 dead-lettered upload(s)" in capsys.readouterr().out
    messages = sqs.receive_message(QueueUrl=urls.progress, MaxNumberOfMessages=10)["Messages"]
    event = ProgressEvent.from_json(messages[0]["Body"])
    assert (event.type.value, event.upload_id, event.extra["retrying"]) == ("error", "up-c", False)
