"""Fan-out mode's work for each role that changes in it, done through the library as that
role's IAM user: the processor publishes to the SNS FIFO topic, the stream handler's hubs
make, subscribe, read and delete their own instance queues (and sweep a crashed one's),
the operator makes the topic and sweeps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import attrs

from tests.integration.iam.conftest import OUTPUTS, IamWorld
from tests.integration.iam.work import (
    BRANCH,
    FAST,
    STREAM_SECRET,
    Stack,
    dead_letter,
    deploy,
    processor,
    progress_types,
    queue_claimed_job,
    run_processor,
)
from tests.support.pipeline import drain_events
from tests.support.streaming import SseClient, wait_until, wsgi_server
from transflow import ProgressHub, ProgressPublisher, TransflowConfig
from transflow._wire.tokens import issue_stream_token
from transflow.ops import announce
from transflow.ops.provision import ensure_topic, resolve_progress_destination
from transflow.processing.destination import ProgressTopic
from transflow.streaming.apps import wsgi_app
from transflow.streaming.instances import InstanceQueue, heartbeat_age, sweep_instance_queues

FANOUT_CONFIG = TransflowConfig(project="iamapp")
FANOUT_CONFIG = attrs.evolve(
    FANOUT_CONFIG, sqs=attrs.evolve(FANOUT_CONFIG.sqs, progress_fanout="sns")
)


@attrs.define
class FanOutStack:
    """A deployed project in fan-out mode: the stack and its progress topic."""

    stack: Stack
    topic_arn: str

    @property
    def prefix(self) -> str:
        return FANOUT_CONFIG.instance_queue_prefix

    def instance_queues(self) -> list[str]:
        sqs = self.stack.harness.sqs()
        return sqs.list_queues(QueueNamePrefix=self.prefix).get("QueueUrls", [])

    def listener(self) -> InstanceQueue:
        """An instance queue of the harness's own, to see what reaches the topic."""
        harness = self.stack.harness
        queue = InstanceQueue(harness.sqs(), harness.sns(), self.topic_arn, self.prefix)
        queue.open()
        return queue

    def crashed_instance(self, silent: float = 4.0) -> str:
        """The queue of an instance that died without cleaning up: subscribed, and without
        a heartbeat for ``silent`` seconds by SQS's clock; returns its name."""
        queue = self.listener()
        url = queue.url
        assert url is not None
        sqs = self.stack.harness.sqs()
        wait_until(
            lambda: (heartbeat_age(sqs, url) or 0.0) > silent,
            timeout=silent + 20,
            what="the crashed instance's queue gone silent",
        )
        return queue.name


def deploy_fanout(world: IamWorld, **drop: str) -> FanOutStack:
    """:func:`deploy` with the fan-out config: the queues and the topic made by the harness."""
    world.config = FANOUT_CONFIG
    stack = deploy(world, **drop)
    return FanOutStack(stack, ensure_topic(world.harness.sns(), FANOUT_CONFIG))


# -- processor ------------------------------------------------------------------------------


def processor_fanout_work(fan: FanOutStack) -> None:
    """A job runs to completion and its progress reaches the topic (checked on a queue the
    harness subscribed)."""
    stack = fan.stack
    seen = fan.listener()
    role = stack.roles["processor"]
    plain = processor(stack)
    the_processor = attrs.evolve(
        plain, progress=ProgressTopic(fan.topic_arn), sns_client=role.sns()
    )
    queue_claimed_job(stack, "up-f", stack.urls.processing)
    assert run_processor(stack, the_processor) == {"batchItemFailures": []}
    assert seen.url is not None
    published = [e.type.value for e in drain_events(stack.harness.sqs(), seen.url)]
    assert published[:1] + published[-1:] == ["start", "done"], published


# -- stream ---------------------------------------------------------------------------------


@contextmanager
def fanout_servers(fan: FanOutStack, count: int) -> Iterator[tuple[list[ProgressHub], list[str]]]:
    """``count`` stream handlers as the stream role, each its own hub (its own instance
    queue) and WSGI app; yields the hubs and their URLs."""
    role = fan.stack.roles["stream"]
    with ExitStack() as servers:
        hubs, bases = [], []
        for _ in range(count):
            hub = ProgressHub(
                role.sqs(),
                ProgressTopic(fan.topic_arn),
                sns=role.sns(),
                instance_prefix=fan.prefix,
                wait_time_seconds=1,
                instance_stale_after=3,  # a heartbeat a second, as the stream role
            )
            servers.enter_context(hub)
            app = wsgi_app(hub, heartbeat=0.5, secret=STREAM_SECRET)
            bases.append(servers.enter_context(wsgi_server(app)))
            hubs.append(hub)
        yield hubs, bases


def stream_fanout_work(fan: FanOutStack) -> None:
    """Two stream handlers each get every event published to the topic; a hub's sweep
    removes a crashed instance's queue; stopping removes each hub's own queue."""
    stack = fan.stack
    stream = stack.roles["stream"]
    crashed = fan.crashed_instance()
    channel = f"upload:{BRANCH}:up-s"
    token = issue_stream_token(STREAM_SECRET, channel)
    publisher = ProgressPublisher(
        ProgressTopic(fan.topic_arn), sns=stack.harness.sns(), flush_after=0.0, policy=FAST
    )
    clients: list[SseClient] = []
    with fanout_servers(fan, 2) as (hubs, bases):
        try:
            for base in bases:
                client = SseClient(f"{base}/?channel={channel}&token={token}").start()
                clients.append(client)
                client.wait_for(lambda events: any(e.type == "snapshot" for e in events))
            with publisher.stream("up-s", BRANCH) as progress:
                progress.emit("start")
                progress.emit("done")
            wait_until(
                lambda: all("done" in progress_types(c) for c in clients) or bool(stream.denied),
                timeout=15,
                what="the events on both streams",
            )
            assert [progress_types(c) for c in clients] == [["start", "done"]] * 2, stream.denied
            assert hubs[0].sweep(propagation=0) == (crashed,)
        finally:
            for client in clients:
                client.close()
    assert fan.instance_queues() == [], "the hubs left their queues behind"
    subscriptions = stack.harness.sns().list_subscriptions_by_topic(TopicArn=fan.topic_arn)
    assert subscriptions["Subscriptions"] == []


# -- operator -------------------------------------------------------------------------------


def operator_fanout_work(fan: FanOutStack) -> None:
    """``transflow queues ensure`` makes the topic; ``queues sweep`` removes a crashed
    instance's queue and subscription; ``dlq announce`` publishes its final error to the
    topic."""
    operator = fan.stack.roles["operator"]
    assert ensure_topic(operator.sns(), FANOUT_CONFIG) == fan.topic_arn
    crashed = fan.crashed_instance()
    report = sweep_instance_queues(
        operator.sqs(), operator.sns(), fan.topic_arn, fan.prefix, stale_after=3, propagation=0
    )
    assert (report.deleted, report.unsubscribed) == ((crashed,), 1), report
    assert fan.instance_queues() == []
    dead_letter(fan.stack, "up-fd")
    seen = fan.listener()
    try:
        announced = announce.announce(
            operator.sqs(),
            fan.stack.urls.dlq,
            resolve_progress_destination(operator.sqs(), FANOUT_CONFIG, sns=operator.sns()),
            sns=operator.sns(),
            s3=operator.s3(),
            output_bucket=OUTPUTS,
        )
        assert announced.announced == ("up-fd",), announced
        assert seen.url is not None
        events = drain_events(fan.stack.harness.sqs(), seen.url)
        assert [(e.type.value, e.upload_id) for e in events] == [("error", "up-fd")], events
    finally:
        seen.close()


def recovery_fanout_work(fan: FanOutStack) -> None:
    """The scheduled recovery in fan-out mode: a dead-lettered job's final error reaches the
    topic (examples/lambda_recovery.py builds its publisher from the same config)."""
    recovery = fan.stack.roles["recovery"]
    # As deployed: the template gives the function SNS_PROGRESS_TOPIC_ARN, so the role needs
    # no CreateTopic to find the topic.
    deployed = attrs.evolve(
        FANOUT_CONFIG, sqs=attrs.evolve(FANOUT_CONFIG.sqs, progress_topic_arn=fan.topic_arn)
    )
    dead_letter(fan.stack, "up-rf")
    seen = fan.listener()
    try:
        announced = announce.announce(
            recovery.sqs(),
            fan.stack.urls.dlq,
            resolve_progress_destination(recovery.sqs(), deployed, sns=recovery.sns()),
            sns=recovery.sns(),
            s3=recovery.s3(),
            output_bucket=OUTPUTS,
        )
        assert announced.announced == ("up-rf",), announced
        assert seen.url is not None
        events = drain_events(fan.stack.harness.sqs(), seen.url)
        assert [(e.type.value, e.upload_id) for e in events] == [("error", "up-rf")], events
    finally:
        seen.close()


FANOUT_WORK: dict[str, Any] = {
    "processor": processor_fanout_work,
    "stream": stream_fanout_work,
    "operator": operator_fanout_work,
    "recovery": recovery_fanout_work,
}
