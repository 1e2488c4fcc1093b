"""Peek, redrive and purge the dead-letter queue on the moto server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.awsrequest
import pytest
from bench.chaos import CallFaults

from tests.support.faults import EntryFaults
from transflow import (
    ConfirmationRequiredError,
    ProcessingJob,
    QueueUrls,
    S3ObjectRef,
    SqsConfig,
    TransflowConfig,
    TransflowError,
    UserContext,
    count_requests,
    ensure_queues,
)
from transflow._aws.claimcheck import store_claimed_job
from transflow._aws.retry import RetryPolicy
from transflow._wire.keys import status_key, user_folder
from transflow.cli.app import main
from transflow.cli.local import LocalAws, local_client_config
from transflow.ops.dlq import peek, purge
from transflow.ops.redrive import RedriveProgress, redrive

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

CONFIG = TransflowConfig(project="shop", branch="main", sqs=SqsConfig(max_receive_count=2))
FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)


@pytest.fixture
def bare_sqs(aws: LocalAws) -> SQSClient:
    """No botocore retries: only transflow's are at work."""
    return aws.sqs(local_client_config(retries={"mode": "standard", "total_max_attempts": 1}))


@pytest.fixture
def urls(bare_sqs: SQSClient) -> QueueUrls:
    return ensure_queues(bare_sqs, CONFIG)


def job(upload: str, n: int = 0, user: str | None = None) -> ProcessingJob:
    return ProcessingJob(
        upload_id=upload,
        template_id="thumbnails",
        objects=[S3ObjectRef("uploads", f"uploads/main/{upload}/file{n}.jpg")],
        branch="main",
        user=UserContext(user) if user else None,
    )


def fail_into_dlq(sqs: SQSClient, urls: QueueUrls, jobs: list[ProcessingJob]) -> None:
    """Queue jobs and fail each one maxReceiveCount times, so SQS's redrive policy moves
    them to the DLQ, as it would for a processor that keeps failing."""
    for i, item in enumerate(jobs):
        sqs.send_message(
            QueueUrl=urls.processing,
            MessageBody=item.to_json(),
            MessageGroupId=item.upload_id,
            MessageDeduplicationId=f"{item.upload_id}:{i}",
        )
    for _ in range(CONFIG.sqs.max_receive_count + 1):
        while sqs.receive_message(
            QueueUrl=urls.processing, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages"):
            pass  # received and failed: back through visibility


def send_to_dlq(sqs: SQSClient, urls: QueueUrls, jobs: list[ProcessingJob]) -> None:
    for i, item in enumerate(jobs):
        sqs.send_message(
            QueueUrl=urls.dlq,
            MessageBody=item.to_json(),
            MessageGroupId=item.upload_id,
            MessageDeduplicationId=f"dlq-{i}",
        )


def drain(sqs: SQSClient, url: str) -> list[tuple[str, str]]:
    """(group, upload id:object key) of every message, in the order received."""
    got: list[tuple[str, str]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
        ).get("Messages", [])
        if not messages:
            return got
        for message in messages:
            body = ProcessingJob.from_json(message["Body"])
            got.append((message["Attributes"]["MessageGroupId"], body.objects[0].key))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def depth(sqs: SQSClient, url: str) -> int:
    found = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(found["ApproximateNumberOfMessages"]) + int(
        found["ApproximateNumberOfMessagesNotVisible"]
    )


def visible(sqs: SQSClient, url: str) -> int:
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(found["Attributes"]["ApproximateNumberOfMessages"])


def in_group_order(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for group, key in items:
        groups.setdefault(group, []).append(key)
    return groups


# -- peek ---------------------------------------------------------------------------------


def test_peek_shows_failed_jobs_with_reasons_and_consumes_nothing(
    bare_sqs: SQSClient, s3: S3Client, urls: QueueUrls
) -> None:
    s3.create_bucket(Bucket="outputs")
    big = job("u-claimed", user="alice")
    claim = store_claimed_job(s3, big, bucket="outputs", key="claims/main/u-claimed.json")
    fail_into_dlq(bare_sqs, urls, [job("u-plain", user="bob"), job("u-nostatus")])
    bare_sqs.send_message(
        QueueUrl=urls.dlq,
        MessageBody=claim.to_json(),
        MessageGroupId="u-claimed",
        MessageDeduplicationId="c",
    )
    bare_sqs.send_message(
        QueueUrl=urls.dlq,
        MessageBody="not json",
        MessageGroupId="junk",
        MessageDeduplicationId="j",
    )
    for upload, user, record in (
        (
            "u-plain",
            "bob",
            {
                "ok": "ASSEMBLY_FAILED",
                "error": "STEP_FAILED",
                "message": "thumbnail: image is truncated",
            },
        ),
        ("u-claimed", "alice", {"ok": "ASSEMBLY_FAILED", "error": "TIMEOUT"}),
    ):
        s3.put_object(
            Bucket="outputs", Key=status_key("main", upload, user), Body=json.dumps(record)
        )

    with count_requests(bare_sqs) as counter:
        jobs = peek(bare_sqs, urls.dlq, 10, s3=s3, output_bucket="outputs", wait_sec=0)

    by_upload = {j.upload_id: j for j in jobs if j.upload_id}
    assert set(by_upload) == {"u-plain", "u-nostatus", "u-claimed"}
    assert by_upload["u-plain"].reason == "STEP_FAILED: thumbnail: image is truncated"
    assert by_upload["u-plain"].receive_count >= CONFIG.sqs.max_receive_count
    assert by_upload["u-plain"].template_id == "thumbnails"
    assert by_upload["u-plain"].group_id == "u-plain"
    assert by_upload["u-nostatus"].reason is None
    assert by_upload["u-claimed"].reason == "TIMEOUT"  # its claim check was resolved
    assert by_upload["u-claimed"].user_id == "alice"
    junk = [j for j in jobs if j.upload_id is None]
    assert len(junk) == 1
    assert junk[0].body_error is not None
    assert "invalid" in junk[0].body_error
    # Every message was released at once: all four are visible again.
    assert visible(bare_sqs, urls.dlq) == 4
    assert counter.count("ChangeMessageVisibilityBatch") == 1


def test_peek_finds_the_reason_of_a_user_whose_folder_name_was_cleaned(
    bare_sqs: SQSClient, s3: S3Client, urls: QueueUrls
) -> None:
    # Issue 21: the job carries the folder name the bridge made of "auth0|abc"; peek must look
    # in that folder, not clean the name a second time (another folder, no record, no reason).
    s3.create_bucket(Bucket="outputs")
    folder = user_folder("auth0|abc")
    assert folder != "auth0|abc"
    send_to_dlq(bare_sqs, urls, [job("u-auth0", user=folder)])
    record = {"ok": "ASSEMBLY_FAILED", "error": "STEP_FAILED", "message": "codec missing"}
    key = status_key("main", "u-auth0", "auth0|abc")  # where the processor wrote it
    s3.put_object(Bucket="outputs", Key=key, Body=json.dumps(record))
    (found,) = peek(bare_sqs, urls.dlq, 10, s3=s3, output_bucket="outputs", wait_sec=0)
    assert found.user_id == folder
    assert found.reason == "STEP_FAILED: codec missing"


def test_peek_takes_at_most_n(bare_sqs: SQSClient, urls: QueueUrls) -> None:
    send_to_dlq(bare_sqs, urls, [job(f"u{i}") for i in range(15)])
    jobs = peek(bare_sqs, urls.dlq, 12, wait_sec=0)
    assert len(jobs) == 12
    assert len({j.message_id for j in jobs}) == 12
    assert visible(bare_sqs, urls.dlq) == 15
    with pytest.raises(TransflowError, match="at least 1"):
        peek(bare_sqs, urls.dlq, 0)


def test_peek_shows_the_receive_count_from_before_it(bare_sqs: SQSClient, urls: QueueUrls) -> None:
    fail_into_dlq(bare_sqs, urls, [job("u-counted")])
    counts = [peek(bare_sqs, urls.dlq, 1)[0].receive_count for _ in range(3)]
    # Each peek is a receive (SQS has no other look), so each shows one more than the last.
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    assert counts[0] == CONFIG.sqs.max_receive_count


# -- redrive ------------------------------------------------------------------------------


@pytest.mark.moto_only("moto has no StartMessageMoveTask; LocalStack has it")
def test_redrive_without_move_task_moves_everything_in_group_order(
    bare_sqs: SQSClient, urls: QueueUrls
) -> None:
    jobs = [job(f"u{i % 4}", i) for i in range(25)]
    send_to_dlq(bare_sqs, urls, jobs)
    progress: list[RedriveProgress] = []

    with count_requests(bare_sqs) as counter:
        # moto has no StartMessageMoveTask: the default tries it, then re-sends.
        report = redrive(
            bare_sqs, urls.dlq, urls.processing, on_progress=progress.append, policy=FAST
        )

    assert report.mode == "resend"
    assert report.ok
    assert report.moved == 25
    assert depth(bare_sqs, urls.dlq) == 0
    moved = drain(bare_sqs, urls.processing)
    expected = in_group_order([(j.upload_id, j.objects[0].key) for j in jobs])
    assert in_group_order(moved) == expected
    assert progress[-1] == RedriveProgress(moved=25, failed=0, limit=None)
    assert counter.count("StartMessageMoveTask") == 1
    assert counter.count("DeleteMessageBatch") == counter.count("ReceiveMessage") - 1
    assert counter.count("SendMessage") == 0


def test_redrive_of_poison_messages_from_a_real_redrive(
    bare_sqs: SQSClient, urls: QueueUrls
) -> None:
    fail_into_dlq(bare_sqs, urls, [job("a", 1), job("a", 2), job("b", 3)])
    assert depth(bare_sqs, urls.dlq) == 3
    report = redrive(bare_sqs, urls.dlq, urls.processing, use_move_task=False, wait_sec=0)
    assert report.moved == 3
    assert sorted(drain(bare_sqs, urls.processing)) == [
        ("a", "uploads/main/a/file1.jpg"),
        ("a", "uploads/main/a/file2.jpg"),
        ("b", "uploads/main/b/file3.jpg"),
    ]


def test_an_injected_send_failure_leaves_the_message_and_its_group_in_the_dlq(
    bare_sqs: SQSClient, urls: QueueUrls
) -> None:
    jobs = [job("good", 0), job("bad", 1), job("bad", 2), job("good", 3), job("other", 4)]
    send_to_dlq(bare_sqs, urls, jobs)

    def decide(_call: int, entry: dict[str, Any]) -> tuple[str, bool] | None:
        return ("InvalidParameterValue", True) if "file1.jpg" in entry["MessageBody"] else None

    faults = EntryFaults(bare_sqs, "SendMessageBatch", decide)
    report = redrive(
        bare_sqs, urls.dlq, urls.processing, use_move_task=False, policy=FAST, wait_sec=0
    )

    assert faults.injected == 1
    assert report.moved == 3
    assert not report.ok
    codes = sorted(f.code for f in report.failed)
    assert codes == ["HeldForOrder", "InvalidParameterValue"]
    assert sorted(drain(bare_sqs, urls.processing)) == [
        ("good", "uploads/main/good/file0.jpg"),
        ("good", "uploads/main/good/file3.jpg"),
        ("other", "uploads/main/other/file4.jpg"),
    ]
    # Both messages of the failed group are still in the DLQ, visible again, in order.
    assert drain(bare_sqs, urls.dlq) == [
        ("bad", "uploads/main/bad/file1.jpg"),
        ("bad", "uploads/main/bad/file2.jpg"),
    ]


def test_a_throttled_send_is_retried_and_nothing_is_lost(
    bare_sqs: SQSClient, urls: QueueUrls
) -> None:
    send_to_dlq(bare_sqs, urls, [job(f"u{i}") for i in range(12)])
    faults = CallFaults(
        bare_sqs,
        lambda op, _i: "throttle" if op == "SendMessageBatch" and faults.injected < 2 else None,
    )
    report = redrive(
        bare_sqs, urls.dlq, urls.processing, use_move_task=False, policy=FAST, wait_sec=0
    )
    assert faults.injected == 2
    assert report.ok
    assert report.moved == 12
    assert len(drain(bare_sqs, urls.processing)) == 12


def test_a_send_that_fails_for_good_deletes_nothing(bare_sqs: SQSClient, urls: QueueUrls) -> None:
    send_to_dlq(bare_sqs, urls, [job(f"u{i}") for i in range(3)])
    CallFaults(bare_sqs, lambda op, _i: "500" if op == "SendMessageBatch" else None)
    report = redrive(
        bare_sqs, urls.dlq, urls.processing, use_move_task=False, policy=FAST, wait_sec=0
    )
    assert report.moved == 0
    assert len(report.failed) == 3
    assert depth(bare_sqs, urls.processing) == 0
    assert visible(bare_sqs, urls.dlq) == 3  # released for a later attempt


def test_redrive_limit_and_dry_run(bare_sqs: SQSClient, urls: QueueUrls) -> None:
    send_to_dlq(bare_sqs, urls, [job(f"u{i}") for i in range(14)])

    dry = redrive(bare_sqs, urls.dlq, urls.processing, dry_run=True, wait_sec=0)
    assert dry.mode == "dry-run"
    assert dry.moved == 14
    assert len(dry.jobs) == 14
    assert visible(bare_sqs, urls.dlq) == 14
    assert depth(bare_sqs, urls.processing) == 0

    with count_requests(bare_sqs) as counter:
        some = redrive(bare_sqs, urls.dlq, urls.processing, limit=11, wait_sec=0)
    assert some.mode == "resend"  # a move task cannot stop after N messages
    assert counter.count("StartMessageMoveTask") == 0
    assert some.moved == 11
    assert depth(bare_sqs, urls.processing) == 11
    assert visible(bare_sqs, urls.dlq) == 3


def test_redriving_the_same_dlq_message_twice_is_deduplicated(
    bare_sqs: SQSClient, urls: QueueUrls
) -> None:
    # A redrive that sent a message but could not delete it leaves it in the DLQ; the next
    # redrive sends it again with the same deduplication id, which the FIFO queue drops.
    send_to_dlq(bare_sqs, urls, [job("u1"), job("u2")])
    faults = EntryFaults(
        bare_sqs,
        "DeleteMessageBatch",
        lambda c, e: ("ReceiptHandleIsInvalid", True) if c == 0 and e["Id"] == "e0" else None,
    )
    first = redrive(
        bare_sqs, urls.dlq, urls.processing, use_move_task=False, policy=FAST, wait_sec=0
    )
    assert faults.injected == 1
    assert first.moved == 1
    assert [f.code for f in first.failed] == ["ReceiptHandleIsInvalid"]
    assert "sent, but still in the DLQ" in first.failed[0].message
    assert visible(bare_sqs, urls.dlq) == 1

    second = redrive(
        bare_sqs, urls.dlq, urls.processing, use_move_task=False, policy=FAST, wait_sec=0
    )
    assert second.ok
    assert second.moved == 1
    assert depth(bare_sqs, urls.dlq) == 0
    assert sorted(group for group, _ in drain(bare_sqs, urls.processing)) == ["u1", "u2"]


def test_redrive_with_move_task_support_asks_sqs(bare_sqs: SQSClient, urls: QueueUrls) -> None:
    send_to_dlq(bare_sqs, urls, [job("u1"), job("u2")])
    asked: list[dict[str, Any]] = []

    def answer(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        # Only this operation is answered here (moto has none); everything else is real.
        asked.append(json.loads(params["body"]))
        response = botocore.awsrequest.AWSResponse(
            urls.dlq, 200, botocore.awsrequest.HTTPHeaders(), None
        )
        return response, {"TaskHandle": "task-1", "ResponseMetadata": {"HTTPStatusCode": 200}}

    bare_sqs.meta.events.register(
        "before-call.sqs.StartMessageMoveTask",
        answer,  # type: ignore[arg-type]
    )
    report = redrive(bare_sqs, urls.dlq, urls.processing)

    assert report.mode == "move-task"
    assert report.task_handle == "task-1"
    assert report.moved == 2
    # The account is the endpoint's (moto's 123456789012, LocalStack's 000000000000).
    account = urls.dlq.rstrip("/").split("/")[-2]
    assert asked == [
        {
            "SourceArn": f"arn:aws:sqs:us-east-1:{account}:shop-main-dlq.fifo",
            "DestinationArn": f"arn:aws:sqs:us-east-1:{account}:shop-main-processing.fifo",
        }
    ]
    assert depth(bare_sqs, urls.processing) == 0  # nothing re-sent by us


@pytest.mark.moto_only("moto has no StartMessageMoveTask; LocalStack has it")
def test_insisting_on_a_move_task_where_there_is_none_is_an_error(
    bare_sqs: SQSClient, urls: QueueUrls
) -> None:
    with pytest.raises(TransflowError, match="does not support StartMessageMoveTask"):
        redrive(bare_sqs, urls.dlq, urls.processing, use_move_task=True)


@pytest.mark.moto_only("moto has no StartMessageMoveTask; LocalStack has one, so it moves")
def test_the_command_asks_an_endpoint_without_move_task_once_and_says_it_re_sent(
    aws: LocalAws,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    assert main(["init", "--project", "shop", "--max-receive-count", "2"]) == 0
    urls = ensure_queues(aws.sqs(), CONFIG)
    send_to_dlq(aws.sqs(), urls, [job("a", 1), job("b", 2)])
    capsys.readouterr()
    caplog.clear()

    # The command's own clients retry a 500 as AWS's would: before, moto's traceback of
    # the missing action came once per attempt.
    assert main(["dlq", "redrive"]) == 0

    out, err = capsys.readouterr()
    assert "moved 2 job(s) back" in out
    assert "the endpoint has no StartMessageMoveTask" in out
    assert "Traceback" not in err
    server = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert not [line for line in server if "Traceback" in line]
    assert sum("start_message_move_task" in line for line in server) == 1, server
    assert depth(aws.sqs(), urls.dlq) == 0


# -- purge --------------------------------------------------------------------------------


def test_purge_needs_the_queue_name(bare_sqs: SQSClient, urls: QueueUrls) -> None:
    send_to_dlq(bare_sqs, urls, [job("u1"), job("u2")])
    with pytest.raises(ConfirmationRequiredError, match=r"shop-main-dlq\.fifo"):
        purge(bare_sqs, urls.dlq, confirm="yes")
    assert visible(bare_sqs, urls.dlq) == 2
    assert purge(bare_sqs, urls.dlq, confirm="shop-main-dlq.fifo") == 2
    assert depth(bare_sqs, urls.dlq) == 0
