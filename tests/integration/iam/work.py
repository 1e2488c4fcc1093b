"""What each role of the pipeline does, done through the library as that role's IAM user.

Set-up and checks that are no role's work (buckets, the S3 notification queue, the app
backend signing upload tickets, reading results back) are done by the all-powerful harness
user, so that a refusal can only come from the role under test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from tests.integration.iam.conftest import OUTPUTS, UPLOADS, IamWorld, Principal
from tests.support.bridge import lambda_event, post_files
from tests.support.multipart import MIB, bearer, body, put_parts
from tests.support.pipeline import drain_events, register_audio_demo, wav_bytes
from tests.support.streaming import SseClient, wait_until, wsgi_server
from transflow import (
    GroupingBridge,
    JobProcessor,
    MultipartEndpoint,
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    S3ObjectRef,
    TemplateRegistry,
    UploadFile,
    UploadState,
    UploadTicket,
    create_upload,
    ensure_queues,
)
from transflow._aws.claimcheck import store_claimed_job
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, delete_batch, send_batch
from transflow._wire.keys import status_key
from transflow._wire.tokens import issue_stream_token
from transflow.ops import announce, dlq, redrive
from transflow.ops.health import queue_stats
from transflow.ops.iam import DEFAULT_CLAIM_PREFIX, PolicyDocument
from transflow.ops.provision import QueueUrls, resolve_queue_urls
from transflow.ops.recovery import INCOMPLETE_ERROR, sweep_stale_uploads
from transflow.processing.status import ASSEMBLY_COMPLETED, AssemblyStatus
from transflow.processing.storage import read_status_record as load_status
from transflow.streaming.apps import wsgi_app
from transflow.streaming.records import StatusRecordSnapshots

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from transflow.ingest.bridge import BridgeResponse
    from transflow.processing.processor import BatchResponse

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
BRANCH = "main"


@attrs.define
class Stack:
    """A deployed project: buckets, queues, and one IAM user per role."""

    world: IamWorld
    roles: dict[str, Principal]
    urls: QueueUrls
    events_url: str
    claim_check_prefix: str | None = None

    @property
    def harness(self) -> Principal:
        return self.world.harness

    def claims(self) -> tuple[str, str]:
        """The bucket and prefix of claim checks, as the bridge is configured to match the
        policies: the bridge's default, or the output bucket with the prefix given."""
        if self.claim_check_prefix is None:
            return UPLOADS, DEFAULT_CLAIM_PREFIX
        return OUTPUTS, self.claim_check_prefix

    def denied(self) -> dict[str, list[str]]:
        """The refused calls of every role so far."""
        return {name: list(p.denied) for name, p in self.roles.items() if p.denied}


def deploy(world: IamWorld, *, claim_check_prefix: str | None = None, **drop: str) -> Stack:
    """Buckets, the upload notifications, the queues, and the role users with the generated
    policies (``drop={role: sid}`` leaves one statement out)."""
    policies = world.policies(claim_check_prefix=claim_check_prefix)
    for role, sid in drop.items():
        document = policies.by_role()[role]
        kept = [s for s in document["Statement"] if s["Sid"] != sid]
        assert len(kept) == len(document["Statement"]) - 1, f"{role} has no statement {sid}"
        smaller = PolicyDocument(Version=document["Version"], Statement=kept)
        policies = attrs.evolve(policies, **{role: smaller})
    s3, sqs = world.harness.s3(), world.harness.sqs()
    s3.create_bucket(Bucket=UPLOADS)
    s3.create_bucket(Bucket=OUTPUTS)
    # The SAM template's standard queue of S3 notifications, which the bridge consumes.
    events_url = sqs.create_queue(QueueName=world.config.queue_names.uploads)["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=UPLOADS,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": events_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": f"uploads/{BRANCH}/"}]}
                    },
                }
            ]
        },
    )
    fanout = world.config.sqs.fanout
    urls = ensure_queues(sqs, world.config, sns=world.harness.sns() if fanout else None)
    return Stack(world, world.roles(policies), urls, events_url, claim_check_prefix)


# The stream handler and the app backend share it (TRANSFLOW_STREAM_SECRET in a deployment).
STREAM_SECRET = "iam-tests-stream-secret-of-32-bytes-or-more"


# -- the upload: the app backend signs, the browser posts ----------------------------------


def upload(stack: Stack, names: list[str]) -> UploadTicket:
    ticket = create_upload(
        stack.harness.s3(),
        bucket=UPLOADS,
        branch=BRANCH,
        template_id="audio-demo",
        files=[UploadFile(name, "audio/wav") for name in names],
        fields={"slug": "intro"},
        stream_secret=STREAM_SECRET,
    )
    with stack.world.unenforced():
        post_files(ticket.files, [wav_bytes(0.05, 300.0 + 50 * i) for i in range(len(names))])
    return ticket


# -- bridge ---------------------------------------------------------------------------------


def receive_as_event_source(sqs: SQSClient, url: str, files: int) -> list[dict[str, Any]]:
    """Messages of the uploads queue until ``files`` object-created notifications are among
    them (S3's test event rides along, as it does to the function on AWS), not deleted."""
    deadline = time.monotonic() + 20
    messages: list[dict[str, Any]] = []
    while sum("s3:TestEvent" not in m["Body"] for m in messages) < files:
        assert time.monotonic() < deadline, f"only {len(messages)} notifications of {files}"
        messages.extend(
            dict(m)
            for m in sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
        )
    return messages


def run_bridge(stack: Stack, files: int, *, max_message_bytes: int = 262_144) -> BridgeResponse:
    """The bridge function on the upload's notifications, as Lambda's event source mapping
    runs it on the uploads queue with the function's role: receive, invoke, delete what did
    not fail."""
    bridge = stack.roles["bridge"]
    sqs = bridge.sqs()
    notifications = receive_as_event_source(sqs, stack.events_url, files)
    claim_bucket, claim_prefix = stack.claims()
    the_bridge = GroupingBridge(
        bridge.sqs(),
        bridge.s3(),
        queue_url=stack.urls.processing,
        upload_bucket=UPLOADS,
        claim_bucket=None if stack.claim_check_prefix is None else claim_bucket,
        claim_prefix=claim_prefix,
        max_message_bytes=max_message_bytes,
        retry=FAST,
    )
    response = the_bridge.lambda_handler(lambda_event(notifications), None)
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    done = [
        (m["MessageId"], m["ReceiptHandle"]) for m in notifications if m["MessageId"] not in failed
    ]
    deleted = delete_batch(sqs, stack.events_url, done, policy=FAST)
    assert deleted.ok, deleted.failed
    return response


def bridge_work(stack: Stack) -> None:
    """Three files of one upload become one job, stored as a claim check (a message limit
    above the claim check's size but below the job's forces one)."""
    ticket = upload(stack, ["a.wav", "b.wav", "c.wav"])
    assert run_bridge(stack, 3, max_message_bytes=250) == {"batchItemFailures": []}
    (message,) = stack.harness.sqs().receive_message(QueueUrl=stack.urls.processing)["Messages"]
    claim = json.loads(message["Body"])
    assert claim["uploadId"] == ticket.upload_id, claim
    bucket, prefix = stack.claims()
    assert claim["claimCheck"]["bucket"] == bucket
    assert claim["claimCheck"]["key"].startswith(f"{prefix}{BRANCH}/{ticket.upload_id}/")


# -- processor ------------------------------------------------------------------------------


def processor(stack: Stack) -> JobProcessor:
    role = stack.roles["processor"]
    registry = TemplateRegistry()
    register_audio_demo(registry, {})
    return JobProcessor(
        registry,
        s3_client=role.s3(),
        upload_bucket=UPLOADS,
        sqs_client=role.sqs(),
        progress=ProgressQueue(stack.urls.progress),
        output_bucket=OUTPUTS,
        claim_buckets=[stack.claims()[0]],
        claim_prefix=stack.claims()[1],
        retry_policy=FAST,
        flush_after=0.0,
    )


def run_processor(stack: Stack, the_processor: JobProcessor) -> BatchResponse:
    """One batch, as Lambda's event source mapping runs it with the function's role:
    receive, invoke, delete what did not fail."""
    sqs = stack.roles["processor"].sqs()
    deadline = time.monotonic() + 10
    while not (
        messages := sqs.receive_message(
            QueueUrl=stack.urls.processing,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
    ):
        assert time.monotonic() < deadline, "no job reached the processing queue"
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }
    response = the_processor.handle(event)
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    done = [(m["MessageId"], m["ReceiptHandle"]) for m in messages if m["MessageId"] not in failed]
    deleted = delete_batch(sqs, stack.urls.processing, done, policy=FAST)
    assert deleted.ok, deleted.failed
    return response


def queue_claimed_job(stack: Stack, upload_id: str, url: str) -> ProcessingJob:
    """The harness does the bridge's part: files in place, the job claimed, its message
    sent to ``url``."""
    s3 = stack.harness.s3()
    refs = []
    for name in ("a.wav", "b.wav"):
        key = f"uploads/{BRANCH}/{upload_id}/{name}"
        s3.put_object(Bucket=UPLOADS, Key=key, Body=wav_bytes(0.05))
        refs.append(S3ObjectRef(UPLOADS, key))
    job = ProcessingJob(upload_id, "audio-demo", refs, BRANCH, fields={"slug": "intro"})
    bucket, prefix = stack.claims()
    claim = store_claimed_job(s3, job, bucket=bucket, key=f"{prefix}{BRANCH}/{upload_id}/j.json")
    sent = send_batch(
        stack.harness.sqs(),
        url,
        [(upload_id, OutgoingMessage(claim.to_json(), upload_id, upload_id))],
        policy=FAST,
    )
    assert sent.ok, sent.failed
    return job


def processor_work(stack: Stack) -> None:
    """A claim-checked job runs to completion: inputs read, outputs and status written,
    progress published, the message deleted."""
    queue_claimed_job(stack, "up-p", stack.urls.processing)
    assert run_processor(stack, processor(stack)) == {"batchItemFailures": []}
    status = load_status(stack.harness.s3(), OUTPUTS, status_key(BRANCH, "up-p"))
    assert status is not None
    assert status.completed, status
    # Progress is best effort for the job (a refused publish does not fail it), but a
    # browser waits for it.
    published = [e.type.value for e in drain_events(stack.harness.sqs(), stack.urls.progress)]
    assert published[:1] + published[-1:] == ["start", "done"], published


# -- stream ---------------------------------------------------------------------------------


def progress_types(client: SseClient) -> list[str]:
    """The progress event types a browser received, in order (the snapshot excluded)."""
    return [json.loads(e.data)["type"] for e in client.of_type("message")]


@contextmanager
def sse_server(stack: Stack) -> Iterator[str]:
    """The stream handler as the stream role: the hub and the WSGI app; yields its URL."""
    with (
        ProgressHub(
            stack.roles["stream"].sqs(), ProgressQueue(stack.urls.progress), wait_time_seconds=1
        ) as hub,
        wsgi_server(wsgi_app(hub, heartbeat=0.5, secret=STREAM_SECRET)) as base,
    ):
        # The hub lease on the shared queue: without it a second stream process would go
        # unnoticed (the hub reads on, "unleased", and logs an ERROR).
        assert hub.stats().lease == "held", stack.roles["stream"].denied
        yield base


def stream_work(stack: Stack) -> None:
    """A published event reaches a browser watching its upload; the snapshot of an upload
    the hub has not seen comes from its status record (StatusRecordSnapshots)."""
    record = AssemblyStatus(
        "up-r", "up-r", "audio-demo", BRANCH, None, "fp", 1, "t", ok=ASSEMBLY_COMPLETED
    )
    key = status_key(BRANCH, "up-r")
    stack.harness.s3().put_object(Bucket=OUTPUTS, Key=key, Body=record.to_json().encode())
    snapshots = StatusRecordSnapshots(stack.roles["stream"].s3(), OUTPUTS)
    recorded = snapshots(f"upload:{BRANCH}:up-r")
    assert recorded is not None, stack.roles["stream"].denied
    assert recorded.state is UploadState.COMPLETED
    event = ProgressEvent.create("done", upload_id="up-s", branch=BRANCH, seq=1)
    with sse_server(stack) as base:
        token = issue_stream_token(STREAM_SECRET, f"upload:{BRANCH}:up-s")
        client = SseClient(f"{base}/?channel=upload:{BRANCH}:up-s&token={token}").start()
        try:
            client.wait_for(lambda events: any(e.type == "snapshot" for e in events))
            send_batch(
                stack.harness.sqs(),
                stack.urls.progress,
                [("e", OutgoingMessage(event.to_json(), "up-s", "e"))],
                policy=FAST,
            )
            stream = stack.roles["stream"]
            wait_until(
                lambda: bool(progress_types(client) or stream.denied),
                timeout=15,
                what="the event on the stream",
            )
            assert progress_types(client) == ["done"], stream.denied
        finally:
            client.close()


# -- operator -------------------------------------------------------------------------------


def dead_letter(stack: Stack, upload_id: str) -> None:
    """A claim-checked job in the DLQ, its status record saying why it failed."""
    queue_claimed_job(stack, upload_id, stack.urls.dlq)
    stack.harness.s3().put_object(
        Bucket=OUTPUTS,
        Key=status_key(BRANCH, upload_id),
        Body=json.dumps({"error": "DECODE_FAILED", "message": "not audio"}).encode(),
    )


def operator_work(stack: Stack) -> None:
    """The queues ensured, a dead-lettered job peeked at (claim check and status record
    read), announced, redriven; the DLQ purged; the status with CloudWatch."""
    operator = stack.roles["operator"]
    sqs, s3 = operator.sqs(), operator.s3()
    urls = resolve_queue_urls(sqs, stack.world.config)
    assert urls == ensure_queues(sqs, stack.world.config) == stack.urls
    dead_letter(stack, "up-d")
    (job,) = dlq.peek(sqs, urls.dlq, s3=s3, output_bucket=OUTPUTS)
    assert (job.upload_id, job.template_id, job.body_error) == ("up-d", "audio-demo", None)
    assert job.reason == "DECODE_FAILED: not audio"
    announced = announce.announce(
        sqs, urls.dlq, ProgressQueue(urls.progress), s3=s3, output_bucket=OUTPUTS
    )
    assert announced.announced == ("up-d",), announced
    redriven = redrive.redrive(sqs, urls.dlq, urls.processing, use_move_task=False, policy=FAST)
    assert (redriven.moved, redriven.ok) == (1, True), redriven
    assert dlq.purge(sqs, urls.dlq, confirm=urls.dlq.rsplit("/", 1)[-1]) == 0
    stats = queue_stats(sqs, urls, cloudwatch=operator.cloudwatch())
    assert (stats.processing.visible, stats.progress.visible, stats.dlq.visible) == (1, 1, 0)


# -- recovery -------------------------------------------------------------------------------


def recovery_work(stack: Stack) -> None:
    """One run of the scheduled recovery (examples/lambda_recovery.py), an hour and a half
    later: a dead-lettered job announced (its claim check and status record read) and left in
    the DLQ; an upload whose second file never came failed by an event and a status record."""
    harness = stack.harness
    dead_letter(stack, "up-r")
    ticket = create_upload(
        harness.s3(),
        bucket=UPLOADS,
        branch=BRANCH,
        template_id="audio-demo",
        files=[UploadFile("a.wav", "audio/wav"), UploadFile("b.wav", "audio/wav")],
        stream_secret=STREAM_SECRET,
    )
    with stack.world.unenforced():
        post_files(ticket.files[:1], [wav_bytes(0.05)])
    recovery = stack.roles["recovery"]
    sqs, s3 = recovery.sqs(), recovery.s3()
    later = time.time() + 5400
    announced = announce.announce(
        sqs,
        stack.urls.dlq,
        ProgressQueue(stack.urls.progress),
        s3=s3,
        output_bucket=OUTPUTS,
        policy=FAST,
    )
    assert announced.announced == ("up-r",), announced
    swept = sweep_stale_uploads(
        s3,
        sqs,
        upload_bucket=UPLOADS,
        output_bucket=OUTPUTS,
        progress=ProgressQueue(stack.urls.progress),
        branch=BRANCH,
        clock=lambda: later,
        policy=FAST,
    )
    assert [u.upload_id for u in swept.failed] == [ticket.upload_id], swept
    # The dead-lettered job's files were put by the harness, not through a ticket.
    assert [p.split(" (")[0] for p in swept.problems] == [
        f"uploads/{BRANCH}/up-r/: unreadable upload metadata"
    ], swept.problems
    status = load_status(harness.s3(), OUTPUTS, status_key(BRANCH, ticket.upload_id))
    assert status is not None
    assert status.error == INCOMPLETE_ERROR, status
    events = drain_events(harness.sqs(), stack.urls.progress)
    assert sorted((e.upload_id, e.type.value) for e in events) == sorted(
        [("up-r", "error"), (ticket.upload_id, "error")]
    ), events
    depth = harness.sqs().get_queue_attributes(
        QueueUrl=stack.urls.dlq, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "1"


def uploads_work(stack: Stack) -> None:
    """The app backend as its own user: a ticket whose big file goes in parts (begun by
    create_upload), the parts signed, listed after a "refresh", completed; a second one
    aborted. The browser's PUTs act as the signer (checked by S3 on AWS; moto is told to
    look away for them, as for the POSTs)."""
    signer = stack.roles["uploads"].s3()
    endpoint = MultipartEndpoint(signer, UPLOADS, secret=STREAM_SECRET, part_size=5 * MIB)
    ticket = create_upload(
        signer,
        bucket=UPLOADS,
        branch=BRANCH,
        template_id="audio-demo",
        files=[UploadFile("big.wav", "audio/wav", 6 * MIB), UploadFile("b.wav", "audio/wav", 6)],
        stream_secret=STREAM_SECRET,
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    big = ticket.files[0]
    assert big.method == "multipart"
    with stack.world.unenforced():
        put_parts(endpoint, big, ticket.upload_id, ticket.stream_token, [1, 2])
    listed = endpoint.handle(
        "list-parts", body(big, ticket.upload_id), authorization=bearer(ticket.stream_token)
    )
    assert listed.status == 200, listed.body
    parts = [{"partNumber": p["partNumber"], "etag": p["etag"]} for p in listed.body["parts"]]
    done = endpoint.handle(
        "complete",
        body(big, ticket.upload_id, parts=parts),
        authorization=bearer(ticket.stream_token),
    )
    assert done.status == 200, done.body
    assert done.body["size"] == 6 * MIB
    other = create_upload(
        signer,
        bucket=UPLOADS,
        branch=BRANCH,
        template_id="audio-demo",
        files=[UploadFile("c.wav", "audio/wav", 6 * MIB)],
        stream_secret=STREAM_SECRET,
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    aborted = endpoint.handle(
        "abort", body(other.files[0], other.upload_id), authorization=bearer(other.stream_token)
    )
    assert aborted.status == 200, aborted.body


WORK: dict[str, Any] = {
    "bridge": bridge_work,
    "processor": processor_work,
    "stream": stream_work,
    "operator": operator_work,
    "recovery": recovery_work,
    "uploads": uploads_work,
}
