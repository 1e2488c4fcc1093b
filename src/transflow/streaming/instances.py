"""Fan-out mode: one FIFO queue per hub instance, subscribed to the SNS FIFO progress topic.

SQS gives each message to one receiver, so several stream processes on one progress queue
split the events between them. In fan-out mode the processor publishes to an SNS FIFO topic
instead, and each hub instance (each process) owns a queue
``{project}-{branch}-progress-{instance}.fifo`` that the topic delivers every event to:

- :meth:`InstanceQueue.open` creates the queue (FIFO, a policy that lets only the topic send),
  tags it with its instance, process and a ``transflow:last-seen`` time, and subscribes it
  to the topic with raw message delivery (the body is the event's JSON, as on the shared
  queue);
- :meth:`InstanceQueue.touch` is the hub's heartbeat (on a timer): a SetQueueAttributes
  call, which SQS stamps as the queue's ``LastModifiedTimestamp``, and the last-seen tag
  (for operators, and for the sweeps of older versions during a rolling upgrade);
- :meth:`InstanceQueue.close` unsubscribes, then deletes the queue. In that order: a
  subscription whose queue is gone fails the deliveries to it (and, in moto, the publisher's
  whole batch).

A crashed instance cannot close its queue; :func:`sweep_instance_queues` (run by every hub on
its timer, and by ``transflow queues sweep``) unsubscribes and deletes the instance queues not
seen for longer than the stale time, and unsubscribes subscriptions left without a queue.

Staleness never depends on the clock of any host: a queue's age is SQS's time (the ``Date``
header of the GetQueueAttributes response) minus its ``LastModifiedTimestamp`` (stamped by
SQS at the heartbeat), both read from one response. A sweeper whose clock runs ahead, or a
hub whose clock runs behind, cannot get a live queue swept. The last-seen tag (written with
the hub's clock) only counts when it is not later than SQS's time, so it can keep a queue of
an older version alive, never make one look stale.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

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
    "PROPAGATION_SEC",
    "InstanceQueue",
    "InstanceSweepReport",
    "heartbeat_age",
    "is_missing",
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
_SUBSCRIPTION_NOT_FOUND = frozenset({"NotFound", "NotFoundException"})
# Set back and forth by the heartbeat: a value that changes is a change SQS must stamp. The
# hub's poller passes WaitTimeSeconds on every receive, so the queue's default is unused.
_HEARTBEAT_ATTRIBUTE = "ReceiveMessageWaitTimeSeconds"
PROPAGATION_SEC = 60.0
"""How late an attribute change may show in SQS's answers (AWS: "up to 60 seconds"): a sweep
waits this long past the stale time before it takes a queue for dead."""


def is_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says a queue or a subscription does not exist."""
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    return client_error_code(exc) in _NOT_FOUND | _SUBSCRIPTION_NOT_FOUND


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
    _beats: int = attrs.field(init=False, default=0)

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
        """The heartbeat, so no sweep takes the queue for a crashed instance's: a change of
        the queue's attributes (SQS stamps its ``LastModifiedTimestamp``) and the last-seen
        tag. Raises the ClientError :func:`is_missing` recognizes when the queue is gone."""
        if self.url is None or self.arn is None:
            return
        url, arn = self.url, self.arn
        self._beats += 1
        attributes = {
            # Sent again each time: moto drops a policy left out of SetQueueAttributes.
            "Policy": queue_policy(arn, self.topic_arn),
            _HEARTBEAT_ATTRIBUTE: str(self._beats % 2),
        }
        _retrying(
            self.policy,
            lambda: self.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes),  # type: ignore[arg-type]
        )
        _retrying(
            self.policy,
            lambda: self.sqs.tag_queue(QueueUrl=url, Tags={LAST_SEEN_TAG: str(int(self.clock()))}),
        )

    def subscribed(self) -> bool:
        """Whether the topic still has the queue's subscription (a sweep or an operator may
        have removed it while the queue stayed). Read from the topic's subscriptions (at
        most 100 on a FIFO topic: one page), with the permission the hub has anyway."""
        if self.subscription_arn is None:
            return False
        return any(
            arn == self.subscription_arn for arn, _ in _subscriptions(self.sns, self.topic_arn)
        )

    def close(self) -> None:
        """Unsubscribe, then delete the queue (a queue deleted while subscribed breaks the
        topic's deliveries); errors are logged, since a sweep cleans up what is left."""
        subscription, self.subscription_arn = self.subscription_arn, None
        url, self.url = self.url, None
        if subscription is not None:
            sub = subscription
            self._remove(lambda: self.sns.unsubscribe(SubscriptionArn=sub))
        if url is not None:
            self._remove(lambda: self.sqs.delete_queue(QueueUrl=url))

    def _remove(self, call: Callable[[], object]) -> None:
        try:
            _retrying(self.policy, call)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            if not is_missing(exc):  # gone already (a sweep, an operator): nothing to do
                log.exception(
                    "fan-out: could not remove instance queue %s; a sweep will", self.name
                )


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


def _server_time(response: Mapping[str, Any]) -> float | None:
    """SQS's time when it answered: the response's ``Date`` header (1 s resolution)."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None


def heartbeat_age(sqs: SQSClient, url: str, now: float | None = None) -> float | None:
    """Seconds since the instance queue's last heartbeat, by SQS's clock alone (None: no
    such queue). ``now`` (default: this host's clock) only stands in for an endpoint whose
    responses carry no ``Date`` header."""
    try:
        response = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["LastModifiedTimestamp"],
        )
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    except botocore.exceptions.ClientError as exc:
        if client_error_code(exc) in _NOT_FOUND:
            return None
        raise
    # Only an endpoint that sends no Date header makes us use our own clock.
    now = _server_time(response) or (time.time() if now is None else now)
    stamps = [float(response.get("Attributes", {}).get("LastModifiedTimestamp", "0") or 0)]
    try:
        tagged = float(tags.get(LAST_SEEN_TAG, ""))
    except ValueError:
        tagged = None
    if tagged is not None and tagged <= now:
        stamps.append(tagged)  # an older version's heartbeat; a tag from the future is no proof
    return max(0.0, now - max(stamps))


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
    propagation: float | None = None,
) -> InstanceSweepReport:
    """Unsubscribe and delete the instance queues under ``prefix`` whose last heartbeat is
    more than ``stale_after`` plus ``propagation`` seconds old (never the URLs in ``keep``),
    and unsubscribe the topic's subscriptions to instance queues that no longer exist.

    The age is measured by SQS's clock alone (see the module's docstring); ``now`` (default:
    this host's clock) is used only when the endpoint's responses carry no ``Date``
    header. ``propagation`` defaults to :data:`PROPAGATION_SEC` (a local endpoint shows a
    change at once: 0 there)."""
    now = time.time() if now is None else now
    margin = PROPAGATION_SEC if propagation is None else propagation
    # Subscriptions first: a queue made after this listing has no subscription in it, so it
    # can never be taken for a queue that is gone.
    subscriptions = list(_subscriptions(sns, topic_arn))
    urls = [u for u in _queue_urls(sqs, prefix) if is_instance_queue(prefix, u.rsplit("/", 1)[1])]
    names = {u.rsplit("/", 1)[1]: u for u in urls}
    deleted: list[str] = []
    alive: list[str] = []
    stale: set[str] = set()
    for name, url in names.items():
        age = None if url in keep else heartbeat_age(sqs, url, now)
        if url in keep or (age is not None and age <= stale_after + margin):
            alive.append(name)
        elif age is not None:
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
