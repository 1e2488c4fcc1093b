"""``transflow queues …`` and ``transflow status``: create, inspect, sweep and delete the
branch's queues, and judge their health."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import attrs

from transflow._wire.model import converter
from transflow.cli.app import EXIT_OK, EXIT_UNHEALTHY, Context, command
from transflow.errors import ConfigError, ConfirmationRequiredError, ProvisionWarning
from transflow.ops import health, provision
from transflow.streaming.instances import sweep_instance_queues

__all__: list[str] = []


# -- queues -----------------------------------------------------------------------------


def _configure_ensure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--function-timeout",
        type=int,
        metavar="SEC",
        help="the processing function's timeout, to check the visibility timeout against",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


@command("queues ensure", help="create or correct the queues", configure=_configure_ensure)
def _queues_ensure(context: Context) -> int:
    with warnings.catch_warnings():
        # Printed below as one 'warning:' line each; the Python warning would repeat them.
        warnings.simplefilter("ignore", ProvisionWarning)
        report = provision.ensure_queues_report(
            context.sqs(),
            context.config,
            function_timeout_sec=context.args.function_timeout,
            sns=context.sns() if context.config.sqs.fanout else None,
        )
    if context.args.json:
        context.print_json(converter.unstructure(report))
        return EXIT_OK
    for name in report.created:
        context.print(f"created  {name}")
    for change in report.changes:
        context.print(
            f"changed  {change.queue}: {change.attribute} {change.before} -> {change.after}"
        )
    for line in report.warnings:
        context.note(f"warning: {line}")
    if not report.changed:
        context.print("no change: every queue is as configured")
    for role in provision.ROLES:
        context.print(f"{role:<11} {getattr(report.urls, role)}")
    if report.topic_arn:
        context.print(f"{'topic':<11} {report.topic_arn}")
    return EXIT_OK


def _configure_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stale-after",
        type=int,
        metavar="SEC",
        help="delete instance queues not seen for this long (default: sqs.instanceStaleSec)",
    )
    parser.add_argument("--topic-arn", metavar="ARN", help="the progress topic, if not configured")
    parser.add_argument("--json", action="store_true", help="print JSON")


@command(
    "queues sweep",
    help="delete the queues of hub instances that stopped without cleaning up (fan-out mode)",
    configure=_configure_sweep,
)
def _queues_sweep(context: Context) -> int:
    config = context.config
    topic = context.args.topic_arn or config.sqs.progress_topic_arn
    if topic is None:
        topic = provision.ensure_topic(context.sns(), config) if config.sqs.fanout else None
    if topic is None:
        raise ConfigError(
            "queues sweep works in fan-out mode: set sqs.progressFanout to 'sns' (or "
            "sqs.progressTopicArn), or pass --topic-arn"
        )
    stale = context.args.stale_after or config.sqs.instance_stale_sec
    report = sweep_instance_queues(
        context.sqs(), context.sns(), topic, config.instance_queue_prefix, stale_after=stale
    )
    if context.args.json:
        context.print_json(attrs.asdict(report))
        return EXIT_OK
    for name in report.deleted:
        context.print(f"deleted  {name}")
    context.print(
        f"{len(report.deleted)} stale instance queues deleted, {report.unsubscribed} "
        f"subscriptions removed, {len(report.alive)} live instances"
    )
    return EXIT_OK


def _configure_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


_DESCRIBED = (
    ("visible", "ApproximateNumberOfMessages"),
    ("in flight", "ApproximateNumberOfMessagesNotVisible"),
    ("visibility", "VisibilityTimeout"),
    ("retention", "MessageRetentionPeriod"),
)


@command("queues describe", help="show the queues and their attributes", configure=_configure_json)
def _queues_describe(context: Context) -> int:
    described = provision.describe_queues(context.sqs(), context.config)
    if context.args.json:
        context.print_json([converter.unstructure(d) for d in described])
        return EXIT_OK
    rows = [["role", "name", *[label for label, _ in _DESCRIBED], "max receives"]]
    for queue in described:
        if queue.url is None:
            rows.append([queue.role, queue.name, "(missing)", "", "", "", ""])
            continue
        redrive = json.loads(queue.attributes.get("RedrivePolicy", "{}") or "{}")
        rows.append(
            [
                queue.role,
                queue.name,
                *[queue.attributes.get(attribute, "?") for _, attribute in _DESCRIBED],
                str(redrive.get("maxReceiveCount", "-")),
            ]
        )
    context.table(rows)
    return EXIT_OK


def _configure_delete(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="confirm: delete them")


@command(
    "queues delete",
    help="delete the branch's queues and every message in them",
    configure=_configure_delete,
)
def _queues_delete(context: Context) -> int:
    names = context.config.queue_names
    if not context.args.yes:
        raise ConfirmationRequiredError(
            f"this deletes {names.processing}, {names.progress} and {names.dlq} with every "
            "message in them: pass --yes to go ahead"
        )
    deleted = provision.delete_queues(context.sqs(), names)
    for name in deleted:
        context.print(f"deleted  {name}")
    if not deleted:
        context.print("no queue to delete")
    return EXIT_OK


# -- status -----------------------------------------------------------------------------


def _configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--cloudwatch",
        action="store_true",
        help="also read the oldest message's age and the backlog trend from CloudWatch",
    )
    parser.add_argument(
        "--max-dlq",
        type=int,
        default=0,
        metavar="N",
        help="failed jobs tolerated in the dead-letter queue (default 0: any is unhealthy)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=900.0,
        metavar="SEC",
        help="how long a job may wait before it counts as stuck (default 900)",
    )
    parser.add_argument(
        "--max-backlog",
        type=int,
        metavar="N",
        help="waiting jobs tolerated in the processing queue (default: no limit)",
    )


def _depth_json(depth: health.QueueDepth) -> dict[str, Any]:
    return {
        "name": depth.name,
        "visible": depth.visible,
        "inFlight": depth.in_flight,
        "delayed": depth.delayed,
    }


@command(
    "status",
    help="queue depths and a health verdict (exit status 1 when unhealthy)",
    configure=_configure_status,
)
def _status(context: Context) -> int:
    sqs = context.sqs()
    urls = provision.resolve_queue_urls(sqs, context.config)
    stats = health.queue_stats(
        sqs, urls, cloudwatch=context.cloudwatch() if context.args.cloudwatch else None
    )
    if context.config.sqs.fanout:
        sns = context.sns()
        topic = provision.ensure_topic(sns, context.config)
        stats = attrs.evolve(stats, subscriptions=health.topic_subscriptions(sns, topic))
    verdict = health.health(
        stats,
        health.HealthThresholds(
            max_dlq=context.args.max_dlq,
            max_oldest_age_sec=context.args.max_age,
            max_backlog=context.args.max_backlog,
        ),
    )
    if context.args.json:
        context.print_json(
            {
                "healthy": verdict.healthy,
                "problems": [attrs.asdict(p) for p in verdict.problems],
                "warnings": [attrs.asdict(p) for p in verdict.warnings],
                "queues": {
                    "processing": _depth_json(stats.processing),
                    "progress": _depth_json(stats.progress),
                    "dlq": _depth_json(stats.dlq),
                },
                "oldestAgeSec": stats.oldest_age_sec,
                "backlogTrend": list(stats.backlog_trend),
                "subscriptions": (
                    None
                    if stats.subscriptions is None
                    else {
                        "topic": stats.subscriptions.topic_arn,
                        "used": stats.subscriptions.used,
                        "limit": stats.subscriptions.limit,
                    }
                ),
                "takenAt": stats.taken_at.isoformat(),
            }
        )
    else:
        rows = [["queue", "name", "visible", "in flight", "delayed"]]
        for role in provision.ROLES:
            depth: health.QueueDepth = getattr(stats, role)
            rows.append(
                [role, depth.name, str(depth.visible), str(depth.in_flight), str(depth.delayed)]
            )
        context.table(rows)
        if stats.oldest_age_sec is not None:
            context.print(f"oldest job waiting: {stats.oldest_age_sec:.0f}s")
        subs = stats.subscriptions
        if subs is not None:
            name = subs.topic_arn.rsplit(":", 1)[-1]
            context.print(f"topic {name}: {subs.used}/{subs.limit} subscriptions used")
        context.print()
        for warning in verdict.warnings:
            context.print(f"WARNING [{warning.code}] {warning.message}")
            context.print(f"  -> {warning.hint}")
        if verdict.healthy:
            context.print("healthy")
        for problem in verdict.problems:
            context.print(f"UNHEALTHY [{problem.code}] {problem.message}")
            context.print(f"  -> {problem.hint}")
    return EXIT_OK if verdict.healthy else EXIT_UNHEALTHY
