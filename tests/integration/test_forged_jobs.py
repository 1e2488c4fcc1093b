"""Issue 21: a forged or damaged job never crosses a user's boundary.

Each job below is one a leaked credential, a misconfigured queue policy or a host's buggy
producer could put on the processing queue. Each is run through the Lambda handler and
through the worker on the embedded endpoint, and must be refused (``JobConfinementError``)
before any effect: no S3 read of the objects it names, no output, no status record, no
progress event, no step run.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    drain_events,
    lambda_record,
    list_keys,
    make_buckets,
    make_queues,
    put_upload,
    wav_bytes,
)
from tests.support.streaming import wait_until
from transflow import JobProcessor, ProcessingJob, ProgressQueue, StepContext, TemplateRegistry
from transflow._aws.claimcheck import MAX_CLAIM_CHECK_BYTES, ClaimCheck, store_claimed_job
from transflow._aws.metering import RequestCounter, count_requests
from transflow._aws.poller import poller_client_config
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow.cli.local import LocalAws
from transflow.processing.worker import make_worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
CLAIMS = "transflow/claims/main/"


@attrs.define
class World:
    """The endpoint, its buckets and queues, and a template that copies its inputs."""

    aws: LocalAws
    s3: S3Client
    sqs: SQSClient
    queues: Queues
    registry: TemplateRegistry
    ran: list[str]

    def processor(self) -> JobProcessor:
        return JobProcessor(
            self.registry,
            s3_client=self.aws.s3(),
            sqs_client=self.aws.sqs(poller_client_config(1)),
            progress=ProgressQueue(self.queues.progress),
            upload_bucket=UPLOADS,
            output_bucket=OUTPUTS,
            retry_policy=FAST,
        )


@pytest.fixture
def world(aws: LocalAws, s3: S3Client, sqs: SQSClient) -> World:
    make_buckets(s3)
    s3.create_bucket(Bucket="elsewhere")
    ran: list[str] = []
    registry = TemplateRegistry()
    copy = registry.template("copy")

    @copy.step("copy")
    def copy_inputs(ctx: StepContext) -> None:
        for item in ctx.inputs:
            ran.append(item.key)
            ctx.upload_result(item.path, item.name)

    return World(aws, s3, sqs, make_queues(sqs), registry, ran)


def put_victims(s3: S3Client) -> None:
    """Alice's upload (with an output already made) and an anonymous upload."""
    put_upload(s3, "alice-up", [("secret.wav", wav_bytes(0.05))], "alice")
    s3.put_object(Bucket=OUTPUTS, Key="outputs/main/users/alice/alice-up/report.json", Body=b"{}")
    put_upload(s3, "anon-up", [("a.wav", wav_bytes(0.05))], None)


def forged(upload_id: str, user: str | None, *refs: tuple[str, str], branch: str = "main") -> str:
    job: dict[str, Any] = {
        "uploadId": upload_id,
        "templateId": "copy",
        "branch": branch,
        "objects": [{"bucket": b, "key": k} for b, k in refs],
    }
    if user is not None:
        job["user"] = {"userId": user}
    return json.dumps(job)


ALICE_INPUT = (UPLOADS, "uploads/main/users/alice/alice-up/secret.wav")
ALICE_OUTPUT = (OUTPUTS, "outputs/main/users/alice/alice-up/report.json")
ANON_INPUT = (UPLOADS, "uploads/main/anon-up/a.wav")

FORGED_JOBS: dict[str, tuple[str, str]] = {
    # mallory names alice's files in a job of her own upload.
    "mallory-reads-alice-input": ("mal-up", forged("mal-up", "mallory", ALICE_INPUT)),
    "mallory-reads-alice-output": ("mal-up", forged("mal-up", "mallory", ALICE_OUTPUT)),
    "mallory-mixes-own-and-alice": (
        "mal-up",
        forged(
            "mal-up", "mallory", (UPLOADS, "uploads/main/users/mallory/mal-up/a.wav"), ALICE_INPUT
        ),
    ),
    "anonymous-reads-alice": ("anon-2", forged("anon-2", None, ALICE_INPUT)),
    "user-reads-anonymous": ("mal-up", forged("mal-up", "mallory", ANON_INPUT)),
    "anonymous-claims-alice-folder": ("alice-up", forged("alice-up", None, ALICE_INPUT)),
    "other-branch-key": (
        "mal-up",
        forged(
            "mal-up",
            "mallory",
            (UPLOADS, "uploads/main/users/mallory/mal-up/a.wav"),
            branch="feature-x",
        ),
    ),
    "other-bucket": (
        "mal-up",
        forged("mal-up", "mallory", ("elsewhere", "uploads/main/users/mallory/mal-up/a.wav")),
    ),
    "dot-dot-segments": (
        "mal-up",
        forged(
            "mal-up",
            "mallory",
            (UPLOADS, "uploads/main/users/mallory/mal-up/../../alice/alice-up/secret.wav"),
        ),
    ),
}


def put_mallory_files(s3: S3Client) -> None:
    # Her own files exist, so only the confinement can refuse her jobs.
    for bucket in (UPLOADS, "elsewhere"):
        s3.put_object(Bucket=bucket, Key="uploads/main/users/mallory/mal-up/a.wav", Body=b"x")
    s3.put_object(
        Bucket=UPLOADS,
        Key="uploads/main/users/mallory/mal-up/../../alice/alice-up/secret.wav",
        Body=b"x",
    )


@pytest.fixture(params=["lambda", "worker"])
def runner(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def deliver(runner: str, world: World, processor: JobProcessor, *bodies: str) -> int:
    """Run messages (each its own group) through the Lambda handler or one worker; how many
    deliveries failed."""
    if runner == "lambda":
        records = [lambda_record(body, f"m-{n}", f"g-{n}") for n, body in enumerate(bodies)]
        return len(processor.handle({"Records": records})["batchItemFailures"])
    messages = [(str(n), OutgoingMessage(b, f"g-{n}", f"d-{n}")) for n, b in enumerate(bodies)]
    assert send_batch(world.sqs, world.queues.processing, messages).ok
    worker = make_worker(
        processor,
        processor.sqs_client,
        world.queues.processing,
        concurrency=2,
        wait_time_seconds=1,
        retry_delay=lambda _message: 600,  # one delivery is enough to see the refusal
    )
    with worker:
        wait_until(
            lambda: worker.stats().failed + worker.stats().succeeded >= len(bodies),
            30,
            "every message delivered once",
        )
    return worker.stats().failed


def assert_no_effect(world: World, requests: RequestCounter) -> None:
    assert world.ran == []
    assert requests.count("GetObject", "s3") == 0
    assert requests.count("PutObject", "s3") == 0
    assert requests.count("HeadObject", "s3") == 0
    for prefix in ("outputs/main/users/mallory/", "outputs/feature-x/", "outputs/main/anon-2/"):
        assert list_keys(world.s3, OUTPUTS, prefix) == []
    assert list_keys(world.s3, OUTPUTS, "outputs/main/alice-up/") == []
    assert drain_events(world.sqs, world.queues.progress) == []


@pytest.mark.parametrize(
    ("runner", "cases"),
    [*(("lambda", [case]) for case in sorted(FORGED_JOBS)), ("worker", sorted(FORGED_JOBS))],
)
def test_a_job_naming_files_outside_its_own_upload_folder_is_refused_before_any_effect(
    world: World, runner: str, cases: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    put_victims(world.s3)
    put_mallory_files(world.s3)
    processor = world.processor()
    bodies = [FORGED_JOBS[case][1] for case in cases]
    with (
        count_requests(processor.s3_client) as requests,
        caplog.at_level(logging.INFO, logger="transflow"),
    ):
        assert deliver(runner, world, processor, *bodies) == len(bodies)
    assert_no_effect(world, requests)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    # Logged once per delivery, at ERROR, by the processor alone.
    assert len(refusals) == len(bodies), [r.getMessage() for r in caplog.records]
    assert {r.levelno for r in refusals} == {logging.ERROR}
    # The victim's files are untouched.
    assert list_keys(world.s3, OUTPUTS, "outputs/main/users/alice/") == [ALICE_OUTPUT[1]]


def test_the_genuine_job_of_the_same_user_still_runs(world: World, runner: str) -> None:
    # The control: the same processor runs what the bridge would have sent.
    put_victims(world.s3)
    put_mallory_files(world.s3)
    body = forged("mal-up", "mallory", (UPLOADS, "uploads/main/users/mallory/mal-up/a.wav"))
    assert deliver(runner, world, world.processor(), body) == 0
    assert world.ran == ["uploads/main/users/mallory/mal-up/a.wav"]
    assert "outputs/main/users/mallory/mal-up/a.wav" in list_keys(world.s3, OUTPUTS)


# -- claim checks ---------------------------------------------------------------------------

OUTSIDE = (
    "uploads/main/mine/job.json",  # a file the uploader wrote
    "transflow/claimsX/main/mine/d.json",
    f"{CLAIMS}victim/d.json",  # another upload's claim check
    "transflow/claims/feature-x/mine/d.json",  # another branch's
    f"{CLAIMS}mine/../../main/victim/d.json",
    f"{CLAIMS}mine/sub/d.json",
)


def test_a_claim_check_outside_the_claim_prefix_is_not_read(world: World, runner: str) -> None:
    job = attrs.evolve(put_upload(world.s3, "mine", [("a.wav", b"x")], None), template_id="copy")
    for key in OUTSIDE:
        store_claimed_job(world.s3, job, bucket=UPLOADS, key=key)
    processor = world.processor()
    claims = [ClaimCheck("mine", UPLOADS, key, "main").to_json() for key in OUTSIDE]
    with count_requests(processor.s3_client) as requests:
        assert deliver(runner, world, processor, *claims) == len(OUTSIDE)
    assert_no_effect(world, requests)


def test_a_claim_check_in_another_bucket_is_not_read(world: World, runner: str) -> None:
    job = attrs.evolve(put_upload(world.s3, "mine", [("a.wav", b"x")], None), template_id="copy")
    claim = store_claimed_job(world.s3, job, bucket="elsewhere", key=f"{CLAIMS}mine/d.json")
    processor = world.processor()
    with count_requests(processor.s3_client) as requests:
        assert deliver(runner, world, processor, claim.to_json()) == 1
    assert_no_effect(world, requests)


@pytest.mark.parametrize(
    ("message", "stored"),
    [
        # The message says upload "mine"; the claim check holds the job of "victim".
        (ClaimCheck("mine", UPLOADS, f"{CLAIMS}mine/d.json", "main"), ("victim", None, "main")),
        # Same upload id, another user.
        (
            ClaimCheck("mine", UPLOADS, f"{CLAIMS}mine/d.json", "main", "mallory"),
            ("mine", "alice", "main"),
        ),
        # An anonymous message for a user's job.
        (ClaimCheck("mine", UPLOADS, f"{CLAIMS}mine/d.json", "main"), ("mine", "alice", "main")),
        # The message's branch is main; the stored job is of another branch.
        (
            ClaimCheck("mine", UPLOADS, f"{CLAIMS}mine/d.json", "main"),
            ("mine", None, "feature-x"),
        ),
        # A message that names no branch (older bridge): the key's branch must still match.
        (ClaimCheck("mine", UPLOADS, f"{CLAIMS}mine/d.json"), ("mine", None, "feature-x")),
    ],
)
def test_a_claim_check_whose_job_is_not_the_messages_is_refused(
    world: World,
    runner: str,
    message: ClaimCheck,
    stored: tuple[str, str | None, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upload_id, user, branch = stored
    user_part = f"users/{user}/" if user else ""
    key = f"uploads/{branch}/{user_part}{upload_id}/a.wav"
    world.s3.put_object(Bucket=UPLOADS, Key=key, Body=b"x")
    victim = ProcessingJob.from_json(forged(upload_id, user, (UPLOADS, key), branch=branch))
    store_claimed_job(world.s3, victim, bucket=UPLOADS, key=message.key)
    processor = world.processor()
    with (
        count_requests(processor.s3_client) as requests,
        caplog.at_level(logging.ERROR, logger="transflow"),
    ):
        assert deliver(runner, world, processor, message.to_json()) == 1
    assert requests.count("GetObject", "s3") == 1  # the claim check, nothing it names
    assert requests.count("PutObject", "s3") == 0
    assert world.ran == []
    assert list_keys(world.s3, OUTPUTS) == []
    assert drain_events(world.sqs, world.queues.progress) == []
    assert any("the claimed job is" in r.getMessage() for r in caplog.records)


def test_a_genuine_claim_check_runs(world: World, runner: str) -> None:
    job = attrs.evolve(put_upload(world.s3, "mine", [("a.wav", b"x")], "alice"), template_id="copy")
    claim = store_claimed_job(world.s3, job, bucket=UPLOADS, key=f"{CLAIMS}mine/d.json")
    assert (claim.branch, claim.user_id) == ("main", "alice")
    assert deliver(runner, world, world.processor(), claim.to_json()) == 0
    assert world.ran == ["uploads/main/users/alice/mine/a.wav"]


def test_a_huge_claim_check_is_not_read_in_full(world: World, runner: str) -> None:
    key = f"{CLAIMS}mine/d.json"
    world.s3.put_object(Bucket=UPLOADS, Key=key, Body=b" " * (48 * 1024 * 1024))
    processor = world.processor()
    asked: list[str | None] = []
    received: list[int] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        asked.append(params.get("Range"))

    def after(parsed: dict[str, Any], **_: Any) -> None:
        received.append(int(parsed.get("ContentLength", -1)))

    events = processor.s3_client.meta.events
    events.register("provide-client-params.s3.GetObject", before)
    events.register("after-call.s3.GetObject", after)
    try:
        claim = ClaimCheck("mine", UPLOADS, key, "main")
        assert deliver(runner, world, processor, claim.to_json()) == 1
    finally:
        events.unregister("provide-client-params.s3.GetObject", before)
        events.unregister("after-call.s3.GetObject", after)
    assert asked == [f"bytes=0-{MAX_CLAIM_CHECK_BYTES}"]
    assert received == [MAX_CLAIM_CHECK_BYTES + 1]  # of 48 MiB: the cap and one byte
    assert world.ran == []
    assert list_keys(world.s3, OUTPUTS) == []


def test_each_refusal_is_counted_as_a_metric(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRANSFLOW_METRICS", "emf")
    put_victims(world.s3)
    bodies = [FORGED_JOBS["mallory-reads-alice-input"][1], FORGED_JOBS["other-bucket"][1]]
    capsys.readouterr()
    assert deliver("lambda", world, world.processor(), *bodies) == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    refused = [line for line in lines if "JobsRefused" in line]
    assert [line["JobsRefused"] for line in refused] == [1, 1]
    assert not [line for line in lines if "JobsFailed" in line or "JobsCompleted" in line]
