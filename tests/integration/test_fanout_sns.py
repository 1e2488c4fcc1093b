"""Fan-out mode on the embedded endpoint: the SNS FIFO progress topic, one queue per hub
instance (raw delivery), the sweep of dead instances, fork detection, snapshots from the
status record. moto delivers SNS -> SQS FIFO synchronously inside the publish, with the body
exact and the group id kept; it ignores queue policies (set anyway, for AWS)."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from examples import lambda_recovery
from tests.support.streaming import fifo_queue, wait_until
from transflow import (
    HubForkedError,
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressPublisher,
    ProgressQueue,
    ProgressTopic,
    S3ObjectRef,
    UploadFile,
    create_upload,
    load_config,
)
from transflow._aws.retry import RetryPolicy
from transflow._aws.sqs_batch import OutgoingMessage, send_batch
from transflow.cli.app import main
from transflow.cli.local import LocalAws, local_client_config
from transflow.errors import InstanceQueueLostError, SubscriptionClosedError
from transflow.ops.provision import ensure_queues_report, ensure_topic
from transflow.processing.status import (
    ASSEMBLY_COMPLETED,
    AssemblyStatus,
    ResultRecord,
)
from transflow.processing.storage import write_status_record
from transflow.streaming import instances
from transflow.streaming.instances import (
    InstanceQueue,
    heartbeat_age,
    sweep_instance_queues,
)
from transflow.streaming.records import StatusRecordSnapshots

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from transflow.config import TransflowConfig

FAST = RetryPolicy(attempts=2, initial=0.01, maximum=0.02)


def fanout_config(tmp_path: Any, **sqs: Any) -> TransflowConfig:
    path = tmp_path / "transflow.config.json"
    path.write_text(
        json.dumps({"project": "fan", "branch": "main", "sqs": {"progressFanout": "sns", **sqs}})
    )
    return load_config(path, env={})


@pytest.fixture
def sns(aws: LocalAws) -> SNSClient:
    return aws.sns()


def hub_for(config: TransflowConfig, aws: LocalAws, topic: str, **options: Any) -> ProgressHub:
    return ProgressHub.from_config(
        config,
        sqs=aws.sqs(),
        sns=aws.sns(),
        progress=ProgressTopic(topic),
        wait_time_seconds=1,
        **options,
    )


def silent_for(sqs: SQSClient, url: str, seconds: float) -> None:
    """Until SQS's own clock says the queue's last heartbeat is over ``seconds`` old: a
    crashed instance's queue, aged for real (staleness is never read from a host's clock)."""
    wait_until(
        lambda: (heartbeat_age(sqs, url) or 0.0) > seconds,
        timeout=seconds + 20,
        what=f"{url} silent for {seconds}s by SQS's clock",
    )


def emit(publisher: ProgressPublisher, upload: str, count: int) -> None:
    with publisher.stream(upload, "main") as stream:
        stream.emit("start")
        for i in range(count - 2):
            stream.emit("progress", percent=i)
        stream.emit("done")


def test_every_hub_instance_gets_every_event_in_order_and_cleans_up(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient, sns: SNSClient
) -> None:
    config = fanout_config(tmp_path)
    report = ensure_queues_report(sqs, config, sns=sns)
    assert report.topic_arn is not None
    assert report.topic_arn.endswith(":fan-main-progress.fifo")
    assert ensure_topic(sns, config) == report.topic_arn  # idempotent
    hubs = [hub_for(config, aws, report.topic_arn).start() for _ in range(3)]
    names = [hub.queue_url.rsplit("/", 1)[1] for hub in hubs if hub.queue_url]
    assert len(set(names)) == 3
    assert all(n.startswith("fan-main-progress-") and len(n) <= 80 for n in names)
    subs = [hub.subscribe("upload:main:*") for hub in hubs]
    publisher = ProgressPublisher(ProgressTopic(report.topic_arn), sns=sns, flush_after=0.05)
    for upload in ("a", "b"):
        emit(publisher, upload, 25)
    try:
        for sub in subs:
            got = [sub.get(timeout=10) for _ in range(50)]
            by_upload = {u: [e.seq for e in got if e and e.upload_id == u] for u in ("a", "b")}
            assert all(len(seqs) == 25 for seqs in by_upload.values())
            assert all(seqs == sorted(s or 0 for s in seqs) for seqs in by_upload.values())
            assert sub.get(timeout=0.2) is None  # no duplicates behind them
    finally:
        for hub in hubs:
            hub.stop(5)
    assert sns.list_subscriptions_by_topic(TopicArn=report.topic_arn)["Subscriptions"] == []
    assert sqs.list_queues(QueueNamePrefix="fan-main-progress-").get("QueueUrls") is None


@pytest.mark.moto_only(
    "moto answers PublishBatch with neither Successful nor Failed when a subscribed queue is "
    "gone; SNS (and LocalStack) accept the batch and fail the delivery later"
)
def test_a_batch_the_topic_answers_with_nothing_is_a_failure_not_a_silent_loss(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient, sns: SNSClient
) -> None:
    # moto answers PublishBatch with neither Successful nor Failed when a subscribed queue
    # was deleted; the publisher must count that as failed, not as sent.
    config = fanout_config(tmp_path)
    topic = ensure_topic(sns, config)
    dead = InstanceQueue(sqs, sns, topic, config.instance_queue_prefix)
    dead.open()
    assert dead.url is not None
    sqs.delete_queue(QueueUrl=dead.url)  # a crash between the two steps of close()
    publisher = ProgressPublisher(ProgressTopic(topic), sns=sns, policy=FAST)
    event = ProgressEvent.create("start", upload_id="x", branch="main", seq=1)
    result = publisher.send([event], "1")
    assert not result.ok
    assert result.succeeded == ()


def test_a_sweep_removes_dead_instances_and_leaves_live_ones(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient, sns: SNSClient
) -> None:
    config = fanout_config(tmp_path)
    topic = ensure_topic(sns, config)
    prefix = config.instance_queue_prefix
    live, dead = (InstanceQueue(sqs, sns, topic, prefix) for _ in range(2))
    live.open()
    dead.open()
    assert dead.url is not None
    # A queue of another branch whose name only starts the same way is never touched.
    other = fifo_queue(sqs, f"{prefix}not-an-instance.fifo")
    orphan = InstanceQueue(sqs, sns, topic, prefix)
    orphan.open()
    assert orphan.url is not None
    sqs.delete_queue(QueueUrl=orphan.url)  # subscription left without a queue
    silent_for(sqs, dead.url, 3)
    live.touch()  # the live hub's heartbeat; the dead one sent none since it opened

    report = sweep_instance_queues(sqs, sns, topic, prefix, stale_after=2, propagation=0)

    assert report.deleted == (dead.name,)
    assert report.unsubscribed == 2
    assert report.alive == (live.name,)
    endpoints = [
        s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    ]
    assert endpoints == [live.arn]
    urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls") or []
    assert sorted(urls) == sorted([str(live.url), other])
    # Delivery works again for the survivors.
    publisher = ProgressPublisher(ProgressTopic(topic), sns=sns, policy=FAST)
    assert publisher.send([ProgressEvent.create("start", upload_id="x", branch="main")], "1").ok


@pytest.mark.localstack_xfail(
    "LocalStack 4.13 never updates a queue's LastModifiedTimestamp (its SQS model has "
    "update_last_modified, and nothing calls it), so the heartbeat is invisible there and only "
    "the last-seen tag (the hub's clock) counts: a hub whose clock runs far behind is swept"
)
def test_a_sweeper_clock_far_ahead_or_a_hub_clock_far_behind_never_sweeps_a_live_queue(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient, sns: SNSClient
) -> None:
    # Staleness is SQS's time (the Date header) minus SQS's LastModifiedTimestamp: the
    # clocks of the sweeping host and of the hub play no part.
    config = fanout_config(tmp_path)
    topic = ensure_topic(sns, config)
    prefix = config.instance_queue_prefix
    behind = InstanceQueue(sqs, sns, topic, prefix, clock=lambda: 1000.0)  # its tag: 1970
    behind.open()
    behind.touch()
    hub = hub_for(config, aws, topic).start()
    try:
        ahead = time.time() + 10 * config.sqs.instance_stale_sec
        report = sweep_instance_queues(
            sqs, sns, topic, prefix, stale_after=config.sqs.instance_stale_sec, now=ahead
        )
        assert report.deleted == ()
        assert report.unsubscribed == 0
        assert sorted(report.alive) == sorted([behind.name, str(hub.queue_url).rsplit("/", 1)[1]])
        # A tag from the future (a hub whose clock runs ahead) does not keep a dead queue.
        future = InstanceQueue(sqs, sns, topic, prefix, clock=lambda: time.time() + 86_400)
        future.open()
        assert future.url is not None
        silent_for(sqs, future.url, 3)
        behind.touch()
        report = sweep_instance_queues(
            sqs, sns, topic, prefix, stale_after=2, propagation=0, keep={str(hub.queue_url)}
        )
        assert report.deleted == (future.name,)
    finally:
        hub.stop(5)


def _resumed_after_loss(
    hub: ProgressHub, sub: Any, publisher: ProgressPublisher, upload: str
) -> tuple[InstanceQueueLostError, list[ProgressEvent]]:
    """The subscriber is ended with InstanceQueueLostError; resumed with its last event id, it
    gets the events published after the hub made its new queue."""
    ended: list[InstanceQueueLostError] = []

    def closed() -> bool:
        try:
            sub.get(timeout=0.1)
        except InstanceQueueLostError as exc:
            ended.append(exc)
            return True
        return False

    wait_until(closed, timeout=20, what="the stream ended with InstanceQueueLostError")
    again = hub.subscribe(f"upload:main:{upload}", sub.last_event_id)
    with publisher.stream(upload, "main") as stream:
        stream.emit("progress", percent=50)
        stream.emit("done")
    got: list[ProgressEvent] = []

    def arrived() -> bool:
        event = again.get(timeout=0.1)
        if event is not None:
            got.append(event)
        return any(e.type.value == "done" for e in got)

    wait_until(arrived, timeout=20, what="the events published after the recovery")
    return ended[0], got


@pytest.mark.parametrize("lost", ["queue", "subscription"])
def test_a_hub_whose_instance_queue_or_subscription_is_gone_makes_new_ones_and_resumes(
    tmp_path: Any, aws: LocalAws, sns: SNSClient, lost: str, caplog: Any
) -> None:
    sqs = aws.sqs()
    config = fanout_config(tmp_path)
    topic = ensure_topic(sns, config)
    prefix = config.instance_queue_prefix
    hub = ProgressHub(
        aws.sqs(),
        ProgressTopic(topic),
        sns=aws.sns(),
        instance_prefix=prefix,
        wait_time_seconds=1,
        instance_stale_after=3,  # a heartbeat a second: a lost subscription is seen soon
    ).start()
    publisher = ProgressPublisher(ProgressTopic(topic), sns=sns, flush_after=0.0, policy=FAST)
    try:
        sub = hub.subscribe("upload:main:up")
        with publisher.stream("up", "main") as stream:
            stream.emit("start")
        first = sub.get(timeout=10)
        assert first is not None
        assert first.type.value == "start"
        old = hub.queue_url
        assert old is not None
        (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        if lost == "queue":  # swept by another host, or deleted by an operator
            sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
            sqs.delete_queue(QueueUrl=old)
        else:  # the subscription alone: the queue stays, and nothing reaches it
            sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
        ended, got = _resumed_after_loss(hub, sub, publisher, "up")
        assert "up" in str(ended)
        assert [e.type.value for e in got] == ["progress", "done"]
        assert hub.stats().instance_recreated == 1
        assert hub.queue_url != old
        urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls") or []
        assert urls == [hub.queue_url]  # the old queue is gone too
        (now,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        assert now["Endpoint"].endswith(str(hub.queue_url).rsplit("/", 1)[1])
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "is gone" in errors[0].getMessage()
    finally:
        hub.stop(5)
    with pytest.raises(SubscriptionClosedError):
        hub.subscribe("upload:main:up").get(timeout=0)
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls") is None
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_a_hub_snapshot_comes_from_the_status_record_when_it_has_not_seen_the_upload(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient
) -> None:
    s3 = aws.s3()
    s3.create_bucket(Bucket="out")
    record = AssemblyStatus(
        assembly_id="as-1",
        upload_id="u1",
        template_id="thumbs",
        branch="main",
        user=None,
        job_fingerprint="f",
        attempt=1,
        execution_start="2026-01-01T00:00:00Z",
        ok=ASSEMBLY_COMPLETED,
        results={
            "resize": (ResultRecord("t.jpg", "out", "outputs/main/u1/t.jpg", 3, "image/jpeg"),)
        },
        last_updated="2026-01-01T00:00:05Z",
    )
    write_status_record(s3, "out", "outputs/main/u1/status.json", record)
    source = StatusRecordSnapshots(s3, "out", ttl=60)
    url = fifo_queue(sqs, "snap-progress.fifo")
    with ProgressHub(sqs, ProgressQueue(url), snapshot_source=source, wait_time_seconds=1) as hub:
        first = hub.subscribe("upload:main:u1")
        again = hub.subscribe("upload:main:u1")
        unknown = hub.subscribe("upload:main:nothing")
    snapshot = json.loads(first.snapshot_json())
    assert snapshot["state"] == "completed"
    assert snapshot["percent"] == 100
    assert snapshot["templateId"] == "thumbs"
    assert [o["key"] for o in snapshot["outputs"]] == ["outputs/main/u1/t.jpg"]
    assert again.snapshot == first.snapshot
    assert json.loads(unknown.snapshot_json())["state"] == "queued"
    assert source.reads == 2  # one GetObject per upload; the second subscriber hit the cache


def test_a_hub_on_the_shared_queue_refuses_to_serve_a_forked_child(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, "fork-progress.fifo")
    hub = ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1).start()
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: report what subscribe did, then leave without cleanup
            try:
                hub.subscribe("upload:main:x")
                answer = b"served"
            except HubForkedError as exc:
                answer = b"refused:" + str(exc).encode()[:500]
            os.write(write, answer)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
    finally:
        hub.stop(5)
    assert answer.startswith(b"refused:")
    assert b"--preload" in answer
    assert b"progressFanout" in answer


def test_fanout_mode_needs_its_topic_and_clients(tmp_path: Any, aws: LocalAws) -> None:
    from transflow import ConfigError

    config = fanout_config(tmp_path)
    with pytest.raises(ConfigError, match="progressTopicArn"):
        ProgressHub.from_config(config, sqs=aws.sqs(), sns=aws.sns())
    with pytest.raises(ConfigError, match="sns="):
        ProgressHub(aws.sqs(), ProgressTopic("arn:aws:sns:us-east-1:123456789012:t.fifo"))
    with pytest.raises(ConfigError, match="sns="):
        ProgressPublisher(ProgressTopic("arn:aws:sns:us-east-1:123456789012:t.fifo"))


def test_the_cli_ensures_the_topic_and_sweeps_crashed_instances(
    tmp_path: Any, aws: LocalAws, sns: SNSClient, capsys: Any, monkeypatch: Any
) -> None:
    sqs = aws.sqs()
    from transflow.cli.app import main

    config = fanout_config(tmp_path)
    path = str(tmp_path / "transflow.config.json")
    common = ["--config", path, "--endpoint-url", aws.endpoint_url]
    assert main(["queues", "ensure", *common]) == 0
    assert ":fan-main-progress.fifo" in capsys.readouterr().out
    topic = ensure_topic(sns, config)
    crashed = InstanceQueue(sqs, sns, topic, config.instance_queue_prefix)
    crashed.open()
    live = InstanceQueue(sqs, sns, topic, config.instance_queue_prefix)
    live.open()
    assert crashed.url is not None
    silent_for(sqs, crashed.url, 3)
    live.touch()
    monkeypatch.setattr(instances, "PROPAGATION_SEC", 0.0)  # moto shows a change at once
    assert main(["queues", "sweep", "--stale-after", "2", *common]) == 0
    out = capsys.readouterr().out
    assert f"deleted  {crashed.name}" in out
    assert "1 stale instance queues deleted, 1 subscriptions removed, 1 live" in out
    assert main(["queues", "sweep", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == []


def _dead_job(sqs: SQSClient, dlq_url: str, upload_id: str) -> None:
    job = ProcessingJob(
        upload_id, "audio", [S3ObjectRef("uploads", f"uploads/main/{upload_id}/a.wav")], "main"
    )
    result = send_batch(
        sqs, dlq_url, [(upload_id, OutgoingMessage(job.to_json(), upload_id, upload_id))]
    )
    assert result.ok


def _finals(sub: Any, uploads: set[str]) -> dict[str, ProgressEvent]:
    """The final error events ``sub`` receives for ``uploads``, waited for with a deadline."""
    found: dict[str, ProgressEvent] = {}

    def arrived() -> bool:
        while (event := sub.get(timeout=0.1)) is not None:
            if event.type.value == "error" and event.upload_id in uploads:
                found[event.upload_id] = event
        return set(found) == uploads

    wait_until(arrived, timeout=20, what=f"final errors for {sorted(uploads)}")
    return found


def _progress_queue_is_empty(sqs: SQSClient, url: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return attributes["ApproximateNumberOfMessages"] == "0"


def test_recovery_in_fanout_mode_reaches_the_hub_instances(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient, sns: SNSClient, monkeypatch: Any
) -> None:
    # A dead-lettered job and an upload whose files stopped arriving: the scheduled
    # recovery (the example's handler, configured from the environment as SAM does) must
    # publish both final errors to the topic, since no hub reads the shared progress queue.
    config = fanout_config(tmp_path)
    report = ensure_queues_report(sqs, config, sns=sns)
    assert report.topic_arn is not None
    urls = report.urls
    s3 = aws.s3(local_client_config(signature_version="s3v4"))
    s3.create_bucket(Bucket="uploads")
    ticket = create_upload(
        s3,
        bucket="uploads",
        branch="main",
        template_id="audio",
        files=[UploadFile("a.wav", "audio/wav"), UploadFile("b.wav", "audio/wav")],
    )
    first = ticket.files[0]
    requests.post(
        first.url, data=dict(first.fields), files={"file": ("a.wav", b"RIFF")}, timeout=10
    ).raise_for_status()
    _dead_job(sqs, urls.dlq, "up-dead")
    env = {
        "TRANSFLOW_PROJECT": "fan",
        "TRANSFLOW_BRANCH": "main",
        "SQS_QUEUE_URL": urls.processing,
        "SQS_PROGRESS_QUEUE_URL": urls.progress,
        "SQS_DLQ_URL": urls.dlq,
        "SNS_PROGRESS_TOPIC_ARN": report.topic_arn,
        "TRANSFLOW_UPLOAD_BUCKET": "uploads",
        "TRANSFLOW_OUTPUT_BUCKET": "uploads",
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_DEFAULT_REGION": aws.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    lambda_recovery._clients.cache_clear()
    hubs = [hub_for(config, aws, report.topic_arn).start() for _ in range(2)]
    try:
        subs = [hub.subscribe("upload:main:*") for hub in hubs]
        later = time.time() + 5400
        summary = lambda_recovery.handler({}, None, clock=lambda: later)
        assert summary["announced"] == ["up-dead"]
        assert summary["staleUploads"] == [ticket.upload_id]
        for sub in subs:
            finals = _finals(sub, {"up-dead", ticket.upload_id})
            assert finals["up-dead"].extra["deadLettered"] is True
            assert finals[ticket.upload_id].extra["error"] == "UPLOAD_INCOMPLETE"
            assert finals[ticket.upload_id].extra["retrying"] is False
    finally:
        for hub in hubs:
            hub.stop(5)
        lambda_recovery._clients.cache_clear()
    assert _progress_queue_is_empty(sqs, urls.progress)


def test_the_announce_command_in_fanout_mode_publishes_to_the_topic(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient, sns: SNSClient
) -> None:
    config = fanout_config(tmp_path)
    report = ensure_queues_report(sqs, config, sns=sns)
    assert report.topic_arn is not None
    _dead_job(sqs, report.urls.dlq, "up-cli")
    hub = hub_for(config, aws, report.topic_arn).start()
    try:
        sub = hub.subscribe("upload:main:up-cli")
        path = tmp_path / "transflow.config.json"
        command = ["dlq", "announce", "--config", str(path), "--endpoint-url", aws.endpoint_url]
        assert main(command) == 0
        final = _finals(sub, {"up-cli"})["up-cli"]
        assert final.extra["retrying"] is False
    finally:
        hub.stop(5)
    assert _progress_queue_is_empty(sqs, report.urls.progress)


def test_status_shows_the_topic_subscriptions_used_and_warns_near_the_limit(
    tmp_path: Any, aws: LocalAws, sns: SNSClient, capsys: Any
) -> None:
    config = fanout_config(tmp_path)
    path = str(tmp_path / "transflow.config.json")
    common = ["--config", path, "--endpoint-url", aws.endpoint_url]
    assert main(["queues", "ensure", *common]) == 0
    topic = ensure_topic(sns, config)
    hub = hub_for(config, aws, topic).start()  # one live stream process: one subscription
    try:
        capsys.readouterr()
        assert main(["status", *common]) == 0
        out = capsys.readouterr().out
        assert "topic fan-main-progress.fifo: 1/100 subscriptions used" in out
        assert "WARNING" not in out

        def subscribe(count: int, start: int) -> None:
            for i in range(start, start + count):  # stand-ins for other processes' queues
                arn = f"arn:aws:sqs:{aws.region}:123456789012:other-{i}.fifo"
                sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

        subscribe(79, 0)
        assert main(["status", *common]) == 0  # near the limit: a warning, still healthy
        out = capsys.readouterr().out
        assert "80/100 subscriptions used" in out
        assert "WARNING [topic-subscriptions-near-limit]" in out
        assert "transflow queues sweep" in out
        assert main(["status", "--json", *common]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["subscriptions"] == {"topic": topic, "used": 80, "limit": 100}
        assert [w["code"] for w in report["warnings"]] == ["topic-subscriptions-near-limit"]
        assert report["healthy"] is True

        subscribe(20, 79)
        assert main(["status", *common]) == 1  # full: a new process cannot subscribe
        out = capsys.readouterr().out
        assert "100/100 subscriptions used" in out
        assert "UNHEALTHY [topic-subscriptions-full]" in out
    finally:
        hub.stop(5)
