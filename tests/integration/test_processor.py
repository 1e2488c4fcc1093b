"""The job processor on the moto server: real files, real queues, real redrive."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from bench.chaos import CallFaults

from tests.support.pipeline import (
    OUTPUTS,
    UPLOADS,
    Queues,
    analyze_wav,
    drain_events,
    get_json,
    lambda_record,
    list_keys,
    make_buckets,
    make_queues,
    put_upload,
    register_audio_demo,
    wav_bytes,
)
from tests.support.vectors import load_vector
from transflow import (
    BatchFailedError,
    JobConfinementError,
    JobFailedError,
    JobFormatError,
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressQueue,
    ReceivedMessage,
    S3ObjectRef,
    StepContext,
    TemplateRegistry,
    count_requests,
)
from transflow._aws.claimcheck import store_claimed_job
from transflow._aws.retry import RetryPolicy
from transflow.cli.local import LocalAws, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)
PREFIX = "outputs/main/users/user123/upload-1/"


@pytest.fixture
def queues(sqs: SQSClient, s3: S3Client) -> Queues:
    make_buckets(s3)
    return make_queues(sqs)


def processor(
    registry: TemplateRegistry, aws: LocalAws, queues: Queues, **options: Any
) -> JobProcessor:
    options.setdefault("retry_policy", FAST)
    options.setdefault("sqs_client", aws.sqs())
    options.setdefault("upload_bucket", UPLOADS)
    return JobProcessor(
        registry,
        s3_client=aws.s3(),
        progress=ProgressQueue(queues.progress),
        output_bucket=OUTPUTS,
        **options,
    )


def event_of(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def test_a_job_runs_through_two_steps(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, tmp_path: Path
) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    first, second = wav_bytes(0.25, 440), wav_bytes(0.5, 220)
    # Two inputs with the same file name must not overwrite each other locally.
    job = put_upload(s3, "upload-1", [("a.wav", first), ("take2/a.wav", second)], "user123")
    work = tmp_path / "work"
    work.mkdir()
    proc = processor(registry, aws, queues, work_dir=str(work), flush_after=30)

    with count_requests(proc.sqs_client, proc.s3_client) as requests:
        response = proc.handle(event_of(lambda_record(job.to_json(), "m-1", "upload-1")))

    assert response == {"batchItemFailures": []}
    assert calls == {"analyze": 1, "compress": 1}
    assert list(work.iterdir()) == []  # the job's directory is gone
    assert list_keys(s3, OUTPUTS) == [
        PREFIX + "analysis/a-1.json",
        PREFIX + "analysis/a.json",
        PREFIX + "compressed/a-1.wav.gz",
        PREFIX + "compressed/a.wav.gz",
        PREFIX + "manifest.json",
        PREFIX + "status.json",
    ]
    packed = s3.get_object(Bucket=OUTPUTS, Key=PREFIX + "compressed/a-1.wav.gz")["Body"].read()
    assert gzip.decompress(packed) == second
    assert get_json(s3, OUTPUTS, PREFIX + "analysis/a.json")["duration"] == 0.25
    assert get_json(s3, OUTPUTS, PREFIX + "analysis/a-1.json")["duration"] == 0.5
    manifest = get_json(s3, OUTPUTS, PREFIX + "manifest.json")
    assert manifest[job.objects[1].key] == hashlib.sha256(second).hexdigest()
    assert s3.head_object(Bucket=OUTPUTS, Key=PREFIX + "manifest.json")["ContentType"] == (
        "application/json"
    )

    status = get_json(s3, OUTPUTS, PREFIX + "status.json")
    assert status["ok"] == "ASSEMBLY_COMPLETED"
    assert status["error"] is None
    assert status["assembly_id"] == "upload-1"
    assert status["template_id"] == "audio-demo"
    assert (status["branch"], status["user"], status["attempt"]) == ("main", "user123", 1)
    assert [u["key"] for u in status["uploads"]] == [o.key for o in job.objects]
    assert status["bytes_received"] == len(first) + len(second)
    assert [r["name"] for r in status["results"]["analyze"]] == [
        "analysis/a.json",
        "analysis/a-1.json",
    ]
    assert len(status["results"]["compress"]) == 3
    assert status["bytes_output"] == sum(r["size"] for rs in status["results"].values() for r in rs)
    assert status["execution_duration"] >= 0
    assert status["execution_start"] <= status["last_updated"]

    events = drain_events(sqs, queues.progress)
    kinds = [(e.type.value, e.step) for e in events]
    assert kinds == [
        ("start", None),
        ("step:start", "analyze"),
        ("output", "analyze"),
        ("progress", "analyze"),
        ("output", "analyze"),
        ("progress", "analyze"),
        ("step:done", "analyze"),
        ("step:start", "compress"),
        ("output", "compress"),
        ("output", "compress"),
        ("output", "compress"),
        ("step:done", "compress"),
        ("done", None),
    ]
    base = events[0].seq or 0
    assert [e.seq for e in events] == list(range(base, base + len(events)))
    assert {e.channel for e in events} == {"upload:main:upload-1"}
    assert events[3].percent == 50
    assert events[-1].extra == {"results": 5}
    # In a Lambda batch the events join one queue, packed (one message per upload per send)
    # and sent when ten uploads wait or at the end: 1 call for the 13 events, no single
    # sends (unpacked, ten events a call: 2).
    assert requests.count("SendMessageBatch") == 1
    assert requests.count("SendMessage") == 0
    # outputs + executing + the checkpoint of the first step + completed (the last step's
    # checkpoint is the completion record)
    assert requests.count("PutObject", "s3") == 5 + 2 + 1


def test_fifo_vector_fails_exactly_the_malformed_message(
    aws: LocalAws, queues: Queues, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    vector = load_vector("sqs-event-fifo-processing.json")
    s3.create_bucket(Bucket="uploads")
    for record in vector["Records"][:2]:
        for ref in json.loads(record["body"])["objects"]:
            s3.put_object(Bucket=ref["bucket"], Key=ref["key"], Body=wav_bytes(0.05))
    registry = TemplateRegistry()
    seen: list[str] = []
    template = registry.template("audio-processing")

    @template.step("measure")
    def measure(ctx: StepContext) -> None:
        for item in ctx.inputs:
            seen.append(f"{item.name}:{analyze_wav(item.path)['frames']}")

    with caplog.at_level(logging.WARNING, logger="transflow"):
        response = processor(registry, aws, queues, upload_bucket="uploads").handle(vector)

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-3"}]}
    assert seen == ["file.mp3:400", "a.wav:400", "b.wav:400"]
    warned = [r for r in caplog.records if "m-3" in r.getMessage()]
    assert warned
    assert warned[0].levelno >= logging.WARNING
    assert "not valid JSON" in warned[0].getMessage()


def test_a_failed_job_fails_the_rest_of_its_group_unrun(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    ran: list[str] = []
    good = registry.template("good")
    bad = registry.template("bad")

    @good.step("record")
    def record(ctx: StepContext) -> None:
        ran.append(ctx.upload_id + ":" + str(ctx.fields["n"]))

    @bad.step("explode")
    def explode(ctx: StepContext) -> None:
        raise RuntimeError("the codec is missing")

    def body(upload: str, template: str, n: int) -> str:
        s3.put_object(Bucket=UPLOADS, Key=f"uploads/main/{upload}/{n}", Body=b"x")
        return ProcessingJob(
            upload_id=upload,
            template_id=template,
            objects=[S3ObjectRef(UPLOADS, f"uploads/main/{upload}/{n}")],
            branch="main",
            fields={"n": n},
        ).to_json()

    proc = processor(registry, aws, queues)
    response = proc.handle(
        event_of(
            lambda_record(body("g1", "good", 1), "m-1", "g1"),
            lambda_record(body("g1", "bad", 2), "m-2", "g1"),
            lambda_record(body("g2", "good", 3), "m-3", "g2"),
            lambda_record(body("g1", "good", 4), "m-4", "g1"),
            lambda_record(body("g2", "good", 5), "m-5", "g2"),
        )
    )
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-4"}]
    assert ran == ["g1:1", "g2:3", "g2:5"]

    # Group state does not leak into the next invocation.
    again = proc.handle(event_of(lambda_record(body("g1", "good", 4), "m-4", "g1", count=2)))
    assert again == {"batchItemFailures": []}
    assert ran[-1] == "g1:4"


def test_a_whole_failed_batch_returns_failures_or_raises_when_asked(
    aws: LocalAws, queues: Queues
) -> None:
    registry = TemplateRegistry()
    event = event_of(
        lambda_record("{", "m-1", "g1"), lambda_record('{"uploadId": "x"}', "m-2", "g2")
    )
    response = processor(registry, aws, queues).handle(event)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["m-1", "m-2"]
    with pytest.raises(BatchFailedError) as raised:
        processor(registry, aws, queues, raise_on_total_failure=True).handle(event)
    assert raised.value.message_ids == ("m-1", "m-2")


class _Clock:
    """A Lambda context whose remaining time is read from a list, one value per call."""

    def __init__(self, *millis: int) -> None:
        self.millis = list(millis)

    def get_remaining_time_in_millis(self) -> int:
        return self.millis.pop(0) if len(self.millis) > 1 else self.millis[0]


def test_no_job_starts_when_lambda_time_is_short(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    jobs = [put_upload(s3, f"up-{n}", [("a.wav", wav_bytes(0.05))], None) for n in range(3)]
    event = event_of(
        *(lambda_record(j.to_json(), f"m-{n}", j.upload_id) for n, j in enumerate(jobs))
    )
    proc = processor(registry, aws, queues, time_margin=30)

    # 60 s before the first job, then 10 s: the second and third are not started.
    response = proc.handle(event, _Clock(60_000, 10_000, 90_000))
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["m-1", "m-2"]
    assert calls == {"analyze": 1, "compress": 1}
    assert "status.json" not in " ".join(list_keys(s3, OUTPUTS, "outputs/main/up-1/"))


def test_redelivery_of_a_completed_job_does_not_run_it_again(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.1))], "user123")
    proc = processor(registry, aws, queues)
    assert proc.handle(event_of(lambda_record(job.to_json(), "m-1", "upload-1"))) == {
        "batchItemFailures": []
    }
    first = {k: s3.head_object(Bucket=OUTPUTS, Key=k)["ETag"] for k in list_keys(s3, OUTPUTS)}
    first_run = drain_events(sqs, queues.progress)

    with count_requests(proc.s3_client) as requests:
        again = proc.handle(event_of(lambda_record(job.to_json(), "m-1", "upload-1", count=2)))

    assert again == {"batchItemFailures": []}
    assert calls == {"analyze": 1, "compress": 1}
    # The "executing" write conditional on there being no record is refused (it writes
    # nothing: the ETags below are unchanged), then the record is read; nothing else.
    assert requests.count("PutObject") == 1
    assert requests.count("GetObject") == 1
    assert {k: s3.head_object(Bucket=OUTPUTS, Key=k)["ETag"] for k in list_keys(s3, OUTPUTS)} == (
        first
    )
    events = drain_events(sqs, queues.progress)
    assert [e.type.value for e in events] == ["done"]
    assert events[0].extra == {"replayed": True, "results": 3}
    # The same message again: its done goes again as the first run numbered it (the queue
    # or the hub drops it when it went; moto forgets a deleted message's deduplication id).
    (first_done,) = [e for e in first_run if e.type.value == "done"]
    assert events[0].seq == first_done.seq


def test_a_new_job_for_a_completed_upload_runs(aws: LocalAws, queues: Queues, s3: S3Client) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.1))], "user123")
    proc = processor(registry, aws, queues)
    proc.run_job(job)
    more = put_upload(
        s3, "upload-1", [("a.wav", wav_bytes(0.1)), ("b.wav", wav_bytes(0.1))], "user123"
    )
    status = proc.run_job(more, attempt=1, attempt_token="second-job")
    assert calls == {"analyze": 2, "compress": 2}
    assert len(status.uploads) == 2


def test_a_job_that_keeps_failing_ends_in_the_dlq(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    template = registry.template("audio-demo")
    attempts: list[int] = []

    @template.step("transcode")
    def transcode(ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"unsupported sample format (attempt {ctx.attempt})")

    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")
    sqs.send_message(
        QueueUrl=queues.processing,
        MessageBody=job.to_json(),
        MessageGroupId=job.upload_id,
        MessageDeduplicationId="job-1",
    )
    proc = processor(registry, aws, queues, max_receive_count=3)
    statuses: list[dict[str, Any]] = []
    deliveries = 0
    for _ in range(10):  # bounded: the redrive must happen within maxReceiveCount deliveries
        received = sqs.receive_message(
            QueueUrl=queues.processing,
            MaxNumberOfMessages=1,
            VisibilityTimeout=0,  # failed: visible again at once, as after the timeout
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            break
        deliveries += 1
        with pytest.raises(JobFailedError) as failed:
            proc.process(ReceivedMessage.from_sqs_message(received[0]))
        assert failed.value.code == "STEP_FAILED"
        assert failed.value.step == "transcode"
        statuses.append(get_json(s3, OUTPUTS, PREFIX + "status.json"))

    assert deliveries == 3
    assert attempts == [1, 2, 3]
    dead = sqs.receive_message(QueueUrl=queues.dlq, MessageSystemAttributeNames=["All"])
    assert [ProcessingJob.from_json(m["Body"]) for m in dead["Messages"]] == [job]
    assert [(s["error"], s["ok"], s["attempt"], s["step"]) for s in statuses] == [
        ("STEP_FAILED", None, n, "transcode") for n in (1, 2, 3)
    ]
    assert statuses[2]["message"] == "unsupported sample format (attempt 3)"
    errors = [e for e in drain_events(sqs, queues.progress) if e.type.value == "error"]
    assert [(e.extra["attempt"], e.extra["retrying"]) for e in errors] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    seqs = [e.seq or 0 for e in errors]
    assert seqs == sorted(set(seqs))  # each attempt numbers after the one before
    assert {e.message for e in errors} == {
        f"unsupported sample format (attempt {n})" for n in (1, 2, 3)
    }


def test_unknown_and_empty_templates_fail_with_a_clear_error(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    registry.template("empty")
    register_audio_demo(registry, {})
    proc = processor(registry, aws, queues)
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")

    with pytest.raises(JobFailedError) as unknown:
        proc.run_job(ProcessingJob.from_dict({**job.to_dict(), "templateId": "video"}))
    assert unknown.value.code == "TEMPLATE_NOT_FOUND"
    assert "'audio-demo', 'empty'" in str(unknown.value)
    status = get_json(s3, OUTPUTS, PREFIX + "status.json")
    assert (status["error"], status["template_id"]) == ("TEMPLATE_NOT_FOUND", "video")

    with pytest.raises(JobFailedError) as empty:
        proc.run_job(ProcessingJob.from_dict({**job.to_dict(), "templateId": "empty"}), attempt=2)
    assert empty.value.code == "TEMPLATE_HAS_NO_STEPS"
    assert get_json(s3, OUTPUTS, PREFIX + "status.json")["error"] == "TEMPLATE_HAS_NO_STEPS"
    assert [e.type.value for e in drain_events(sqs, queues.progress)] == ["error", "error"]


def test_a_step_cannot_write_outside_the_users_prefix(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    template = registry.template("audio-demo")
    refused: list[str] = []

    @template.step("escape")
    def escape(ctx: StepContext) -> None:
        source = ctx.inputs[0].path
        for name in ("../user999/stolen.wav", "/abs.wav", "a/../../x", "status.json"):
            try:
                ctx.upload_result(source, name)
            except ValueError as exc:
                refused.append(type(exc).__name__)
        ctx.upload_result(source, "../../../users/user999/upload-1/evil.wav")

    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")
    with pytest.raises(JobFailedError) as failed:
        processor(registry, aws, queues).run_job(job)
    assert failed.value.code == "OUTPUT_PATH_REFUSED"
    assert refused == ["OutputPathError"] * 4
    assert list_keys(s3, OUTPUTS) == [PREFIX + "status.json"]
    status = get_json(s3, OUTPUTS, PREFIX + "status.json")
    assert status["error"] == "OUTPUT_PATH_REFUSED"
    assert "evil.wav" in status["message"]


def test_a_claim_check_is_resolved_from_s3(aws: LocalAws, queues: Queues, s3: S3Client) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")
    key = "transflow/claims/main/upload-1/d1.json"
    claim = store_claimed_job(s3, job, bucket=UPLOADS, key=key)
    # Claim buckets named: only those; by default the upload and output buckets.
    refused = processor(registry, aws, queues, claim_buckets=[OUTPUTS]).handle(
        event_of(lambda_record(claim.to_json(), "m-0", "upload-1"))
    )
    assert refused == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}
    assert calls == {}
    proc = processor(registry, aws, queues)
    assert proc.handle(event_of(lambda_record(claim.to_json(), "m-1", "upload-1"))) == {
        "batchItemFailures": []
    }
    assert calls == {"analyze": 1, "compress": 1}
    missing = copy.copy(claim.to_json()).replace("/d1.json", "/none.json")
    response = proc.handle(event_of(lambda_record(missing, "m-2", "upload-1")))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}


def test_a_missing_input_fails_the_job_and_cleans_up(
    aws: LocalAws, queues: Queues, s3: S3Client, tmp_path: Path
) -> None:
    registry = TemplateRegistry()
    register_audio_demo(registry, {})
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")
    s3.delete_object(Bucket=UPLOADS, Key=job.objects[0].key)
    with pytest.raises(JobFailedError) as failed:
        processor(registry, aws, queues, work_dir=str(tmp_path)).run_job(job)
    assert failed.value.code == "INPUT_UNAVAILABLE"
    assert job.objects[0].key in str(failed.value)
    assert list(tmp_path.iterdir()) == []


def test_progress_that_cannot_be_sent_does_not_fail_the_job(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")
    # Without botocore's own retries, so only the publisher's (fast) retries are at work.
    bare = aws.sqs(local_client_config(retries={"mode": "standard", "total_max_attempts": 1}))
    proc = processor(registry, aws, queues, sqs_client=bare)
    faults = CallFaults(proc.sqs_client, lambda op, _: "500" if op == "SendMessageBatch" else None)
    with caplog.at_level(logging.ERROR, logger="transflow"):
        status = proc.run_job(job)
    assert status.completed
    assert calls == {"analyze": 1, "compress": 1}
    assert faults.injected >= 3
    assert drain_events(sqs, queues.progress) == []
    assert any("the job goes on" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "forged",
    [
        {"branch": "main:evil"},
        {"branch": ".."},
        {"uploadId": ".."},
        {"user": {"userId": "victim/x"}},
        {"user": {"userId": "../../x"}},
    ],
)
def test_a_forged_job_that_would_leave_its_folder_is_refused_before_any_effect(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client, forged: dict[str, Any]
) -> None:
    registry = TemplateRegistry()
    calls: dict[str, int] = {}
    register_audio_demo(registry, calls)
    job = put_upload(s3, "upload-1", [("a.wav", wav_bytes(0.05))], "user123")
    body = json.dumps({**json.loads(job.to_json()), **forged})
    with pytest.raises(JobConfinementError) as refused:
        processor(registry, aws, queues).process(ReceivedMessage("m-1", "rh", body))
    assert isinstance(refused.value, JobFormatError)
    (field,) = forged
    assert field in str(refused.value)
    assert calls == {}
    assert list_keys(s3, OUTPUTS) == []
    assert drain_events(sqs, queues.progress) == []


def test_inputs_are_downloaded_only_when_a_step_takes_them(
    aws: LocalAws, queues: Queues, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    template = registry.template("noop")
    taken: list[str] = []

    @template.step("nothing")
    def nothing(ctx: StepContext) -> None:
        assert len(ctx.inputs) == 2  # counting them downloads nothing

    @template.step("second")
    def second(ctx: StepContext) -> None:
        taken.append(ctx.inputs[1].path.read_text())

    job = put_upload(s3, "upload-1", [("a.txt", b"first"), ("b.txt", b"second")], None)
    proc = processor(registry, aws, queues)
    noop_job = ProcessingJob(job.upload_id, "noop", job.objects, job.branch)
    with count_requests(proc.s3_client) as requests:
        assert proc.handle(event_of(lambda_record(noop_job.to_json(), "m-1", "upload-1"))) == {
            "batchItemFailures": []
        }

    assert taken == ["second"]
    assert requests.count("GetObject") == 1  # b.txt only: no record read, a.txt never taken
    assert requests.count("PutObject") == 3  # executing, checkpoint, completed
    record = get_json(s3, OUTPUTS, "outputs/main/upload-1/status.json")
    uploads = {u["name"]: (u["size"], u.get("mime")) for u in record["uploads"]}
    assert uploads["b.txt"][0] == len(b"second")
    assert uploads["a.txt"] == (0, None)  # never downloaded: size and type unknown


def test_a_lambda_batch_sends_the_progress_of_all_its_jobs_together(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    registry = TemplateRegistry()
    registry.template("noop").step("nothing")(lambda ctx: None)
    jobs = [
        ProcessingJob(j.upload_id, "noop", j.objects, j.branch)
        for j in (put_upload(s3, f"up-{n}", [("a.txt", b"x")], None) for n in range(10))
    ]
    proc = processor(registry, aws, queues, flush_after=60)  # only full batches and the end
    event = event_of(
        *(lambda_record(j.to_json(), f"m-{n}", j.upload_id) for n, j in enumerate(jobs))
    )
    with count_requests(proc.s3_client, proc.sqs_client) as requests:
        assert proc.handle(event) == {"batchItemFailures": []}

    # 4 events per job, 40 in all, packed per upload: a call as soon as ten uploads wait
    # (the first nine jobs and the tenth's start), one at the end for the tenth's other
    # three; not 2 per job (unpacked, 4 calls of ten events). S3: the executing and the
    # completed record, no read, no input.
    assert requests.count("SendMessageBatch") == 2
    assert requests.count("GetObject") == 0
    assert requests.count("PutObject") == 20
    assert requests.total() / len(jobs) <= 2.5
    events = drain_events(sqs, queues.progress)
    by_upload: dict[str, list[Any]] = {}
    for e in events:
        by_upload.setdefault(e.upload_id, []).append(e)
    assert sorted(by_upload) == sorted(j.upload_id for j in jobs)
    for upload_events in by_upload.values():  # every event once, in order per upload
        assert [e.type.value for e in upload_events] == ["start", "step:start", "step:done", "done"]
        seqs = [e.seq for e in upload_events]
        assert seqs == sorted(seqs)


def test_a_lambda_batch_still_sends_a_running_jobs_events_after_flush_after(
    aws: LocalAws, queues: Queues, sqs: SQSClient, s3: S3Client
) -> None:
    # The combined queue must not hold a long step's step:start until the batch ends: its
    # timer sends it flush_after seconds later, while the step still runs.
    seen: list[str] = []

    def wait_for_own_step_start(ctx: StepContext) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "step:start" not in seen:
            for message in sqs.receive_message(
                QueueUrl=queues.progress, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", []):
                seen.extend(e.type.value for e in ProgressEvent.all_from_json(message["Body"]))
                # Deleted as read: FIFO hands out no later message of a group while an
                # earlier one is in flight (moto 5.2.6 enforces it, as SQS does).
                sqs.delete_message(QueueUrl=queues.progress, ReceiptHandle=message["ReceiptHandle"])

    registry = TemplateRegistry()
    registry.template("slow").step("wait")(wait_for_own_step_start)
    job = put_upload(s3, "up-1", [("a.txt", b"x")], None)
    slow = ProcessingJob(job.upload_id, "slow", job.objects, job.branch)
    proc = processor(registry, aws, queues, flush_after=0.05)
    assert proc.handle(event_of(lambda_record(slow.to_json(), "m-1", "up-1"))) == {
        "batchItemFailures": []
    }
    assert seen[:2] == ["start", "step:start"]
