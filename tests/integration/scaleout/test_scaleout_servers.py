"""Fan-out mode with real servers: 2 gunicorn gthread workers and 2 uvicorn processes, no
sticky routing (subscribers are spread round-robin over the three ports, and gunicorn's
kernel spreads its share over its workers), read with httpx-sse. Every subscriber gets every
event of its upload, in order, once; a killed instance's queue is swept and the others go
on; servers stopped with SIGTERM remove their own queues; under ``gunicorn --preload`` the
hub the master started restarts in each worker. The issue's full matrix (4 gunicorn workers,
2 uvicorn, 50 subscribers on 10 uploads x 20 events, about a minute) runs with
``make scaleout``."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.scaleout.support import Follower, Server, servers
from tests.support.streaming import wait_until
from transflow import ProgressPublisher, ProgressTopic, load_config
from transflow.ops.provision import ensure_topic
from transflow.streaming.instances import heartbeat_age, sweep_instance_queues

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws
    from transflow.config import TransflowConfig

pytestmark = pytest.mark.timeout(120)

# `make scaleout` runs the full matrix (TRANSFLOW_SCALEOUT_FULL=1): 4 gunicorn
# workers + 2 uvicorn, 50 subscribers on 10 uploads x 20 events, about a minute; make test
# runs the same assertions at the small size.
FULL = os.environ.get("TRANSFLOW_SCALEOUT_FULL") == "1"
EVENTS = 20 if FULL else 10
GUNICORN_WORKERS, SUBSCRIBERS, UPLOADS = (4, 50, 10) if FULL else (2, 12, 4)


def fanout_config(tmp_path: Any) -> TransflowConfig:
    path = tmp_path / "transflow.config.json"
    path.write_text(json.dumps({"project": "scale", "sqs": {"progressFanout": "sns"}}))
    return load_config(path, env={})


def follow(bases: list[str], uploads: list[str], subscribers: int) -> list[Follower]:
    followers = [
        Follower(bases[i % len(bases)], uploads[i % len(uploads)]).start()
        for i in range(subscribers)
    ]
    for follower in followers:
        assert follower.subscribed.wait(30), f"{follower.base} never sent the snapshot"
        assert follower.error is None, follower.error
    return followers


def publish(publisher: ProgressPublisher, uploads: list[str]) -> dict[str, list[int]]:
    sent: dict[str, list[int]] = {}
    for upload in uploads:
        with publisher.stream(upload, "main") as stream:
            seqs = [stream.emit("start").seq]
            seqs += [stream.emit("progress", percent=i * 5).seq for i in range(EVENTS - 2)]
            seqs.append(stream.emit("done").seq)
        sent[upload] = [s for s in seqs if s is not None]
    return sent


def check_all_delivered(followers: list[Follower], sent: dict[str, list[int]]) -> None:
    for follower in followers:
        assert follower.finished.wait(30), f"{follower.base} {follower.upload} never finished"
        assert follower.error is None, follower.error
        got = [e["seq"] for e in follower.events]
        assert got == sent[follower.upload], (follower.base, follower.upload)


def instance_queues(sqs: SQSClient, prefix: str) -> dict[str, dict[str, str]]:
    urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls") or []
    return {u: sqs.list_queue_tags(QueueUrl=u).get("Tags", {}) for u in urls}


def test_subscribers_on_four_processes_get_everything_a_killed_one_is_swept_and_sigterm_cleans(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient
) -> None:
    sns: SNSClient = aws.sns()
    config = fanout_config(tmp_path)
    topic = ensure_topic(sns, config)
    prefix = config.instance_queue_prefix
    publisher = ProgressPublisher(ProgressTopic(topic), sns=sns, flush_after=0.05)
    uploads = [f"up{i}" for i in range(UPLOADS)]
    with servers(
        aws.endpoint_url, topic, prefix, gunicorn_workers=GUNICORN_WORKERS, uvicorns=2
    ) as running:
        bases = [s.base for s in running]
        followers = follow(bases, uploads, SUBSCRIBERS)
        check_all_delivered(followers, publish(publisher, uploads))
        assert sum(len(f.events) for f in followers) == SUBSCRIBERS * EVENTS

        # One uvicorn process dies without cleaning up; the others are unaffected.
        victim: Server = running[-1]
        victim_pid = victim.process.pid
        victim.kill()
        survivors = [s.base for s in running[:-1]]
        followers = follow(survivors, ["again"], 4)
        check_all_delivered(followers, publish(publisher, ["again"]))

        # Its queue outlives it until a sweep finds it stale by SQS's clock; the others
        # send their heartbeat every 2 s.
        queues = instance_queues(sqs, prefix)
        dead = [u for u, tags in queues.items() if tags.get("transflow:pid") == str(victim_pid)]
        assert len(dead) == 1
        wait_until(
            lambda: (heartbeat_age(sqs, dead[0]) or 0.0) > 5,
            timeout=30,
            what="the killed instance's queue silent for 5 s",
        )
        report = sweep_instance_queues(sqs, sns, topic, prefix, stale_after=5, propagation=0)
        assert report.deleted == (dead[0].rsplit("/", 1)[1],)
        assert len(report.alive) == len(queues) - 1
    # SIGTERM to gunicorn (its workers stop their hubs at the signal) and to uvicorn (the
    # lifespan stops its hub): every instance queue and subscription is gone, no sweep.
    assert instance_queues(sqs, prefix) == {}
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_gunicorn_preload_restarts_the_hub_in_each_worker(
    tmp_path: Any, aws: LocalAws, sqs: SQSClient
) -> None:
    sns: SNSClient = aws.sns()
    config = fanout_config(tmp_path)
    topic = ensure_topic(sns, config)
    prefix = config.instance_queue_prefix
    publisher = ProgressPublisher(ProgressTopic(topic), sns=sns, flush_after=0.05)
    uploads = ["p1", "p2"]
    with servers(aws.endpoint_url, topic, prefix, gunicorn_workers=2, uvicorns=0, preload=True) as (
        server,
    ):
        followers = follow([server.base], uploads, 10)
        check_all_delivered(followers, publish(publisher, uploads))
        owners = {tags["transflow:pid"] for tags in instance_queues(sqs, prefix).values()}
        # The master's own queue (it started the hub at import) and one per worker that
        # served a subscriber, each under its own process id.
        assert str(server.process.pid) in owners
        assert len(owners) >= 2
        assert str(os.getpid()) not in owners
    # The master's hub is stopped by on_exit, the workers' at SIGTERM.
    assert instance_queues(sqs, prefix) == {}
