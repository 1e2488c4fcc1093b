"""Queue health: how many jobs wait, run and failed, and whether that is a problem.

:func:`queue_stats` reads the depth of the three queues (one GetQueueAttributes call each)
and, only when the caller passes a CloudWatch client, the age of the processing queue's
oldest message and its recent backlog. :func:`health` turns stats into a verdict with
thresholds the caller sets; it is pure, so alarms and tests can call it on any numbers.
In fan-out mode, :func:`topic_subscriptions` counts the progress topic's subscriptions (one
per stream process): SNS allows 100 per FIFO topic, and a hub that cannot subscribe cannot
start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import TYPE_CHECKING

import attrs

from transflow.ops.provision import QueueUrls

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "FIFO_TOPIC_SUBSCRIPTIONS",
    "HealthProblem",
    "HealthThresholds",
    "HealthVerdict",
    "QueueDepth",
    "QueueStats",
    "TopicSubscriptions",
    "health",
    "queue_stats",
    "topic_subscriptions",
]

FIFO_TOPIC_SUBSCRIPTIONS = 100
"""How many subscriptions SNS allows a FIFO topic: at most this many stream processes (hub
instances, leftovers waiting for a sweep included) per branch in fan-out mode."""

_DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@attrs.frozen
class QueueDepth:
    """One queue's message counts (SQS's approximate numbers)."""

    name: str
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        """Every message the queue holds."""
        return self.visible + self.in_flight + self.delayed


@attrs.frozen
class TopicSubscriptions:
    """The progress topic's subscriptions (fan-out mode): ``used`` of ``limit``."""

    topic_arn: str
    used: int
    limit: int = FIFO_TOPIC_SUBSCRIPTIONS


@attrs.frozen
class QueueStats:
    """The state of a branch's queues at ``taken_at``.

    ``oldest_age_sec`` (the processing queue's ApproximateAgeOfOldestMessage) and
    ``backlog_trend`` (its ApproximateNumberOfMessagesVisible, one value a minute, oldest
    first) come from CloudWatch and are None and empty when it was not asked."""

    processing: QueueDepth
    progress: QueueDepth
    dlq: QueueDepth
    taken_at: datetime
    oldest_age_sec: float | None = None
    backlog_trend: tuple[float, ...] = ()
    subscriptions: TopicSubscriptions | None = None
    """In fan-out mode, the progress topic's subscriptions (:func:`topic_subscriptions`)."""


@attrs.frozen
class HealthThresholds:
    """When a branch counts as unhealthy.

    ``max_dlq``: failed jobs tolerated in the DLQ (0: any failed job is a problem).
    ``max_oldest_age_sec``: how long a job may wait before it counts as stuck.
    ``max_backlog``: visible jobs tolerated in the processing queue (None: no limit).
    ``growth_points``: how many rising minutes of backlog (CloudWatch) or a rise since the
    previous sample count as a growing backlog. ``warn_subscriptions``: the progress
    topic's subscriptions from which a warning says the limit is near (at the limit, the
    branch is unhealthy)."""

    max_dlq: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    max_oldest_age_sec: float = attrs.field(default=900.0, validator=attrs.validators.gt(0))
    max_backlog: int | None = None
    growth_points: int = attrs.field(default=5, validator=attrs.validators.ge(2))
    warn_subscriptions: int = attrs.field(default=80, validator=attrs.validators.ge(1))


@attrs.frozen
class HealthProblem:
    """One reason a branch is unhealthy: a stable ``code``, what was seen, what to do."""

    code: str
    message: str
    hint: str


@attrs.frozen
class HealthVerdict:
    """Whether the branch is healthy, every reason it is not, and what is not a problem yet
    but soon will be (``warnings``: they leave it healthy)."""

    problems: tuple[HealthProblem, ...] = ()
    warnings: tuple[HealthProblem, ...] = ()

    @property
    def healthy(self) -> bool:
        """No problem found."""
        return not self.problems


def _rising(values: Sequence[float], points: int) -> bool:
    tail = list(values)[-points:]
    if len(tail) < points:
        return False
    return all(b >= a for a, b in pairwise(tail)) and tail[-1] > tail[0]


def health(
    stats: QueueStats,
    thresholds: HealthThresholds | None = None,
    *,
    previous: QueueStats | None = None,
) -> HealthVerdict:
    """The verdict on ``stats``. ``previous``, an earlier sample, lets a rising backlog be
    seen without CloudWatch."""
    limits = thresholds or HealthThresholds()
    problems = []
    if stats.dlq.total > limits.max_dlq:
        problems.append(
            HealthProblem(
                "dlq-not-empty",
                f"{stats.dlq.total} failed job(s) in {stats.dlq.name}",
                "look at them with 'transflow dlq peek', fix the cause, then "
                "'transflow dlq redrive'",
            )
        )
    if stats.oldest_age_sec is not None and stats.oldest_age_sec > limits.max_oldest_age_sec:
        problems.append(
            HealthProblem(
                "oldest-message-too-old",
                f"the oldest job in {stats.processing.name} has waited "
                f"{stats.oldest_age_sec:.0f}s (limit {limits.max_oldest_age_sec:.0f}s)",
                "processing is stalled or too slow: check the processor's errors and "
                "duration, its reserved and maximum concurrency, and the batch size",
            )
        )
    if limits.max_backlog is not None and stats.processing.visible > limits.max_backlog:
        problems.append(
            HealthProblem(
                "backlog-too-large",
                f"{stats.processing.visible} jobs wait in {stats.processing.name} "
                f"(limit {limits.max_backlog})",
                "raise the processor's maximum concurrency or check that it runs at all",
            )
        )
    grew = previous is not None and stats.processing.visible > previous.processing.visible
    if grew or _rising(stats.backlog_trend, limits.growth_points):
        problems.append(
            HealthProblem(
                "backlog-growing",
                f"the backlog of {stats.processing.name} is growing "
                f"({stats.processing.visible} visible)",
                "jobs arrive faster than they finish: check the processor's concurrency, "
                "errors and throttles",
            )
        )
    warnings = []
    subs = stats.subscriptions
    if subs is not None and subs.used >= subs.limit:
        problems.append(
            HealthProblem(
                "topic-subscriptions-full",
                f"{subs.used} of {subs.limit} subscriptions of {subs.topic_arn} are used: a "
                "new stream process cannot subscribe its instance queue",
                "run 'transflow queues sweep' to remove crashed instances' leftovers; more "
                "stream processes per branch need fewer, larger processes (SNS allows 100 "
                "subscriptions per FIFO topic)",
            )
        )
    elif subs is not None and subs.used >= limits.warn_subscriptions:
        warnings.append(
            HealthProblem(
                "topic-subscriptions-near-limit",
                f"{subs.used} of {subs.limit} subscriptions of {subs.topic_arn} are used",
                "each stream process (and each crashed one until a sweep) holds one: run "
                "'transflow queues sweep', and keep the processes per branch below "
                f"{subs.limit}",
            )
        )
    return HealthVerdict(tuple(problems), tuple(warnings))


def _depth(sqs: SQSClient, url: str) -> QueueDepth:
    found = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=list(_DEPTH_ATTRIBUTES),  # type: ignore[arg-type]
    )["Attributes"]
    values = {str(k): v for k, v in found.items()}
    return QueueDepth(
        name=url.rstrip("/").rsplit("/", 1)[-1],
        visible=int(values.get("ApproximateNumberOfMessages", "0")),
        in_flight=int(values.get("ApproximateNumberOfMessagesNotVisible", "0")),
        delayed=int(values.get("ApproximateNumberOfMessagesDelayed", "0")),
    )


def _series(
    cloudwatch: CloudWatchClient,
    queue: str,
    metric: str,
    statistic: str,
    *,
    start: datetime,
    end: datetime,
) -> list[float]:
    response = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName=metric,
        Dimensions=[{"Name": "QueueName", "Value": queue}],
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=[statistic],  # type: ignore[list-item]
    )
    points = sorted(response.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return [float(p[statistic]) for p in points if statistic in p]  # type: ignore[literal-required]


def topic_subscriptions(sns: SNSClient, topic_arn: str) -> TopicSubscriptions:
    """Count ``topic_arn``'s subscriptions (ListSubscriptionsByTopic, 100 a page: one or two
    requests on a FIFO topic)."""
    used = 0
    token: str | None = None
    while True:
        page = (
            sns.list_subscriptions_by_topic(TopicArn=topic_arn, NextToken=token)
            if token
            else sns.list_subscriptions_by_topic(TopicArn=topic_arn)
        )
        used += len(page.get("Subscriptions", []))
        token = page.get("NextToken")
        if not token:
            return TopicSubscriptions(topic_arn, used)


def queue_stats(
    sqs: SQSClient,
    urls: QueueUrls,
    *,
    cloudwatch: CloudWatchClient | None = None,
    window: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
) -> QueueStats:
    """The depth of the three queues, plus (with ``cloudwatch``) the age of the processing
    queue's oldest message and its backlog over ``window``. Three SQS requests; two
    CloudWatch requests when asked."""
    taken_at = now or datetime.now(timezone.utc)
    processing = _depth(sqs, urls.processing)
    stats = QueueStats(
        processing=processing,
        progress=_depth(sqs, urls.progress),
        dlq=_depth(sqs, urls.dlq),
        taken_at=taken_at,
    )
    if cloudwatch is None:
        return stats
    start, end = taken_at - window, taken_at + timedelta(minutes=1)
    ages = _series(
        cloudwatch,
        processing.name,
        "ApproximateAgeOfOldestMessage",
        "Maximum",
        start=start,
        end=end,
    )
    trend = _series(
        cloudwatch,
        processing.name,
        "ApproximateNumberOfMessagesVisible",
        "Average",
        start=start,
        end=end,
    )
    return attrs.evolve(
        stats, oldest_age_sec=ages[-1] if ages else None, backlog_trend=tuple(trend)
    )
