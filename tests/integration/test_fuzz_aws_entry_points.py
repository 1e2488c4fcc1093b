"""Fuzzing the entry points that need S3 and SQS, on the moto server (issue 13): the bridge's
and the processor's Lambda handlers on batches of arbitrary records beside one good record,
and the DLQ tools on arbitrary dead-lettered bodies.

The same three assertions as tests/unit/test_fuzz_pure_entry_points.py: only typed errors escape,
the good batch-mate succeeds, and every record is a success or a reported item failure.
Examples are few: each is a handful of HTTP calls."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bridge import (
    BUCKET,
    bridge,
    fifo,
    jobs_on,
    lambda_event,
    notifying_bucket,
    put_upload_object,
    receive_notifications,
)
from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    lambda_record,
    make_buckets,
    make_queues,
)
from tests.support.strategies import json_values, texts_for
from transflow import (
    BridgeError,
    JobProcessor,
    ProcessingJob,
    ProgressQueue,
    StepContext,
    TemplateRegistry,
)
from transflow._aws.retry import RetryPolicy
from transflow.ops.announce import announce
from transflow.ops.dlq import peek

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=2, initial=0.001, maximum=0.01)
FEW = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
serial = itertools.count()

garbage_records = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["messageId", "receiptHandle", "body", "attributes", "eventSource", "x"]),
        json_values,
        max_size=5,
    ),
)


def with_ids(records: list[Any]) -> list[Any]:
    """Each record that is an object gets a message id, so a failure can be reported."""
    return [
        {**r, "messageId": f"bad-{i}", "receiptHandle": f"r-{i}"} if isinstance(r, dict) else r
        for i, r in enumerate(records)
    ]


# -- the bridge -----------------------------------------------------------------------------


@FEW
@given(
    bodies=st.lists(texts_for({"Records": [{"eventSource": "aws:s3"}]}), max_size=4),
    direct=json_values,
)
def test_the_bridge_handler_fails_hostile_records_alone(
    sqs: SQSClient, s3: S3Client, bodies: list[str], direct: Any
) -> None:
    events_url = notifying_bucket(sqs, s3)
    url = fifo(sqs)
    n = next(serial)
    put_upload_object(s3, f"uploads/main/good-{n}/a.wav", f"good-{n}")
    (good,) = receive_notifications(sqs, events_url, 1)
    batch = [
        {"MessageId": f"bad-{i}", "ReceiptHandle": f"r-{i}", "Body": body}
        for i, body in enumerate(bodies)
    ]
    real = json.loads(good["Body"])["Records"][0]
    batch.append(
        {
            "MessageId": "bad-mutated",
            "ReceiptHandle": "r",
            "Body": json.dumps(
                {
                    "Records": [
                        {
                            **real,
                            "s3": {**real["s3"], "object": {"key": bodies[0] if bodies else 5}},
                        }
                    ]
                }
            ),
        }
    )
    batch.append(good)
    the_bridge = bridge(sqs, s3, url)

    response = the_bridge.lambda_handler(lambda_event(batch), None)

    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed <= {m["MessageId"] for m in batch}
    assert good["MessageId"] not in failed
    assert f"good-{n}" in [job.upload_id for job in jobs_on(sqs, url)]
    # A direct invocation of any shape is a response or a BridgeError, never anything else.
    with contextlib.suppress(BridgeError):
        the_bridge.lambda_handler(direct, None)
    s3.delete_object(Bucket=BUCKET, Key=f"uploads/main/good-{n}/a.wav")


# -- the processor ------------------------------------------------------------------------


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


@FEW
@given(records=st.lists(garbage_records, max_size=5), bodies=st.lists(texts_for({}), max_size=3))
def test_the_processor_handler_fails_hostile_records_alone(
    sqs: SQSClient,
    s3: S3Client,
    queues: Queues,
    *,
    caplog: pytest.LogCaptureFixture,
    records: list[Any],
    bodies: list[str],
) -> None:
    caplog.clear()
    registry = TemplateRegistry()
    done: list[str] = []

    @registry.template("t", output_bucket=OUTPUTS).step("one")
    def one(ctx: StepContext) -> None:
        done.append(ctx.job.upload_id)

    processor = JobProcessor(
        registry,
        s3_client=s3,
        upload_bucket=UPLOADS,
        sqs_client=sqs,
        progress=ProgressQueue(queues.progress),
        retry_policy=FAST,
        flush_after=0,
    )
    n = next(serial)
    job = ProcessingJob.from_dict(
        {
            "uploadId": f"good-{n}",
            "templateId": "t",
            "branch": "main",
            "objects": [{"bucket": UPLOADS, "key": f"uploads/main/good-{n}/a.wav"}],
        }
    )
    s3.put_object(Bucket=UPLOADS, Key=f"uploads/main/good-{n}/a.wav", Body=b"data")
    hostile = with_ids(records) + [
        lambda_record(body, f"bad-body-{i}", f"g-{i}") for i, body in enumerate(bodies)
    ]
    good = lambda_record(job.to_json(), f"good-{n}", f"good-{n}")

    response = processor.handle({"Records": [*hostile, good]})

    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    named = {r["messageId"] for r in hostile if isinstance(r, dict)}
    assert f"good-{n}" not in failed
    assert done == [f"good-{n}"]
    # Nothing lost: every hostile record is reported failed (none of them is a job), and a
    # record that names no message (not an object) fails as "" so Lambda retries the batch.
    assert failed - {""} == named
    assert ("" in failed) == any(not isinstance(r, dict) for r in hostile)
    # Only typed errors: an untyped one is logged as unexpected.
    assert not [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]


# -- the DLQ tools ------------------------------------------------------------------------


@FEW
@given(bodies=st.lists(texts_for({"uploadId": "x", "claimCheck": {}}), min_size=1, max_size=4))
def test_dlq_peek_and_announce_describe_any_dead_lettered_body(
    sqs: SQSClient, s3: S3Client, queues: Queues, bodies: list[str]
) -> None:
    n = next(serial)
    dlq = sqs.create_queue(QueueName=f"fuzz-{n}-dlq.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    claims = [
        {"uploadId": f"c-{n}", "claimCheck": {"bucket": bucket, "key": "k"}}
        for bucket in ("Not A Bucket!", "x" * 300, UPLOADS, "")
    ]
    sent = [*bodies, *map(json.dumps, claims)]
    for i, body in enumerate(sent):
        if not body:
            continue  # SQS refuses an empty body
        try:
            sqs.send_message(
                QueueUrl=dlq,
                MessageBody=body,
                MessageGroupId=f"g{n}-{i}",
                MessageDeduplicationId=f"d{n}-{i}",
            )
        except sqs.exceptions.ClientError:
            sent[i] = ""  # characters SQS refuses never reach a DLQ
    expected = sum(1 for body in sent if body)

    jobs = peek(sqs, dlq, 10, s3=s3, output_bucket=OUTPUTS)
    report = announce(sqs, dlq, ProgressQueue(queues.progress), 10, s3=s3, output_bucket=OUTPUTS)

    assert len(jobs) == expected
    assert len(report.announced) + len(report.skipped) + len(report.failed) == expected
