"""Fan-out mode: one FIFO queue per hub instance, subscribed to the SNS FIFO progress topic.

SQS gives each message to one receiver, so several stream processes on one progress queue
split the events between them. In fan-out mode the processor publishes to an SNS FIFO topic
instead, and each hub instance (each process) owns a queue
``{project}-{branch}-progress-{instance}.fifo`` that the topic delivers every event to:

- :meth:`InstanceQueue.open` creates the queue (FIFO, a policy that lets only the topic send),
  tags it with its instance, process and a ``transflow:last-seen`` time, and subscribes it
  to the topic with raw message delivery (the body is the event's JSON, as on the shared
  queue);
- :meth:`InstanceQueue.touch` refreshes the last-seen tag (the hub does it on a timer);
- :meth:`InstanceQueue.close` unsubscribes, then deletes the queue. In that order: a
  subscription whose queue is gone fails the deliveries to it (and, in moto, the publisher's
  whole batch).

A crashed instance cannot close its queue; :func:`sweep_instance_queues` (run by every hub on
its timer, and by ``transflow queues sweep``) unsubscribes and deletes the instance queues not
seen for longer than the stale time, and unsubscribes subscriptions left without a queue.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

import attrs
import botocore.exceptions

from transflow._aws.errors import client_error_code
from transflow._aws.retry import RetryPolicy
from transflow._wire.naming import INSTANCE_ID_CHARS, instance_queue_name, is_instance_queue

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "LAST_SEEN_TAG",
    "InstanceQueue",
    "InstanceSweepReport",
    "new_instance_id",
    "queue_policy",
    "sweep_instance_queues",
]

log = logging.getLogger(__name__)

LAST_SEEN_TAG = "transflow:last-seen"
"""The instance queue tag holding when its hub last said it was alive (epoch seconds)."""
_INSTANCE_TAG = "transflow:instance"
_RETENTION_SEC = 3600  # an event older than this is of no use to a progress bar
_NOT_FOUND = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def new_instance_id() -> str:
    """A random instance id: :data:`~transflow._wire.naming.INSTANCE_ID_CHARS` hex
    characters."""
    return secrets.token_hex(INSTANCE_ID_CHARS // 2)


def queue_policy(queue_arn: str, topic_arn: str) -> str:
    """The instance queue's policy: only the progress topic may send to it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OnlyTheProgressTopic",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        },
        separators=(",", ":"),
    )


def _retrying(policy: RetryPolicy, call: Callable[[], object]) -> object:
    for attempt in policy.retrying():
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


@attrs.define(eq=False)
class InstanceQueue:
    """The queue of one hub instance: created and subscribed by :meth:`open`, refreshed by
    :meth:`touch`, unsubscribed and deleted by :meth:`close`."""

    sqs: SQSClient
    sns: SNSClient
    topic_arn: str
    prefix: str
    instance_id: str = attrs.field(factory=new_instance_id)
    policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    clock: Callable[[], float] = time.time
    url: str | None = attrs.field(init=False, default=None)
    arn: str | None = attrs.field(init=False, default=None)
    subscription_arn: str | None = attrs.field(init=False, default=None)

    @property
    def name(self) -> str:
        """``{prefix}{instance}.fifo``."""
        return instance_queue_name(self.prefix, self.instance_id)

    def open(self) -> str:
        """Create, tag and subscribe the queue; returns its URL."""
        url = str(
            _retrying(
                self.policy,
                lambda: self.sqs.create_queue(
                    QueueName=self.name,
                    Attributes={
                        "FifoQueue": "true",
                        "MessageRetentionPeriod": str(_RETENTION_SEC),
                    },
                    tags={
                        _INSTANCE_TAG: self.instance_id,
                        "transflow:pid": str(os.getpid()),
                        "transflow:host": socket.gethostname()[:200],
                        LAST_SEEN_TAG: str(int(self.clock())),
                    },
                )["QueueUrl"],
            )
        )
        self.url = url
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        self.arn = arn["Attributes"]["QueueArn"]
        self.sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": queue_policy(self.arn, self.topic_arn)}
        )
        self.subscription_arn = str(
            _retrying(
                self.policy,
                lambda: self.sns.subscribe(
                    TopicArn=self.topic_arn,
                    Protocol="sqs",
                    Endpoint=str(self.arn),
                    Attributes={"RawMessageDelivery": "true"},
                    ReturnSubscriptionArn=True,
                )["SubscriptionArn"],
            )
        )
        log.info("fan-out: instance queue %s subscribed to %s", self.name, self.topic_arn)
        return url

    def touch(self) -> None:
        """Refresh the last-seen tag, so no sweep takes the queue for a crashed instance's."""
        if self.url is not None:
            url = self.url
            _retrying(
                self.policy,
                lambda: self.sqs.tag_queue(
                    QueueUrl=url, Tags={LAST_SEEN_TAG: str(int(self.clock()))}
                ),
            )

    def close(self) -> None:
        """Unsubscribe, then delete the queue (a queue deleted while subscribed breaks the
        topic's deliveries); errors are logged, since a sweep cleans up what is left."""
        subscription, self.subscription_arn = self.subscription_arn, None
        url, self.url = self.url, None
        try:
            if subscription is not None:
                _retrying(self.policy, lambda: self.sns.unsubscribe(SubscriptionArn=subscription))
            if url is not None:
                _retrying(self.policy, lambda: self.sqs.delete_queue(QueueUrl=url))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            log.exception("fan-out: could not remove instance queue %s; a sweep will", self.name)


@attrs.frozen
class InstanceSweepReport:
    """What a sweep did: queues deleted, subscriptions removed, live queues left alone."""

    deleted: tuple[str, ...] = ()
    unsubscribed: int = 0
    alive: tuple[str, ...] = ()


def _queue_urls(sqs: SQSClient, prefix: str) -> Iterator[str]:
    token: str | None = None
    while True:
        page = (
            sqs.list_queues(QueueNamePrefix=prefix, MaxResults=1000, NextToken=token)
            if token
            else sqs.list_queues(QueueNamePrefix=prefix, MaxResults=1000)
        )
        # The key is absent, not empty, when nothing matches.
        yield from page.get("QueueUrls", [])
        token = page.get("NextToken")
        if not token:
            return


def _subscriptions(sns: SNSClient, topic_arn: str) -> Iterator[tuple[str, str]]:
    token: str | None = None
    while True:
        page = (
            sns.list_subscriptions_by_topic(TopicArn=topic_arn, NextToken=token)
            if token
            else sns.list_subscriptions_by_topic(TopicArn=topic_arn)
        )
        for sub in page.get("Subscriptions", []):
            if sub.get("Protocol") == "sqs":
                yield sub["SubscriptionArn"], sub["Endpoint"]
        token = page.get("NextToken")
        if not token:
            return


def _last_seen(sqs: SQSClient, url: str) -> float | None:
    try:
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    except botocore.exceptions.ClientError as exc:
        if client_error_code(exc) in _NOT_FOUND:
            return None
        raise
    text = tags.get(LAST_SEEN_TAG, "")
    try:
        return float(text)
    except ValueError:
        return 0.0  # no tag (or a broken one): nobody refreshes it, so it is stale


def _exists(sqs: SQSClient, name: str) -> bool:
    try:
        sqs.get_queue_url(QueueName=name)
    except botocore.exceptions.ClientError as exc:
        if client_error_code(exc) in _NOT_FOUND:
            return False
        raise
    return True


def sweep_instance_queues(
    sqs: SQSClient,
    sns: SNSClient,
    topic_arn: str,
    prefix: str,
    *,
    stale_after: float,
    keep: Collection[str] = (),
    now: float | None = None,
) -> InstanceSweepReport:
    """Unsubscribe and delete the instance queues under ``prefix`` whose last-seen tag is
    older than ``stale_after`` seconds (never the URLs in ``keep``), and unsubscribe the
    topic's subscriptions to instance queues that no longer exist."""
    now = time.time() if now is None else now
    # Subscriptions first: a queue made after this listing has no subscription in it, so it
    # can never be taken for a queue that is gone.
    subscriptions = list(_subscriptions(sns, topic_arn))
    urls = [u for u in _queue_urls(sqs, prefix) if is_instance_queue(prefix, u.rsplit("/", 1)[1])]
    names = {u.rsplit("/", 1)[1]: u for u in urls}
    deleted: list[str] = []
    alive: list[str] = []
    stale: set[str] = set()
    for name, url in names.items():
        seen = _last_seen(sqs, url)
        if url in keep or (seen is not None and now - seen <= stale_after):
            alive.append(name)
        elif seen is not None:
            stale.add(name)
    unsubscribed = 0
    for subscription, endpoint in subscriptions:
        name = endpoint.rsplit(":", 1)[1]
        if not is_instance_queue(prefix, name) or name in alive:
            continue
        if name in stale or (name not in names and not _exists(sqs, name)):
            sns.unsubscribe(SubscriptionArn=subscription)
            unsubscribed += 1
    for name in sorted(stale):
        try:
            sqs.delete_queue(QueueUrl=names[name])
        except botocore.exceptions.ClientError as exc:
            if client_error_code(exc) not in _NOT_FOUND:
                raise
        deleted.append(name)
        log.info("fan-out: swept instance queue %s (not seen for %.0f s)", name, stale_after)
    return InstanceSweepReport(tuple(deleted), unsubscribed, tuple(sorted(alive)))
