"""The ``transflow`` command: set up a project, provision its queues, watch their health
and recover failed jobs.

Commands live in a registry: :func:`command` registers a function under a name such as
``"status"`` or ``"dlq peek"`` (a group and an action), and :func:`main` builds the argparse
parser from it. A module that adds commands (``demo``, ``dev``, ``worker``) registers them
with :func:`command` and is named in :data:`COMMAND_MODULES`, which :func:`main` imports.
A command takes ``--config``, ``--endpoint-url`` and ``--region`` unless it names fewer
(``connection``); an error is one line on stderr, without a traceback.

Exit status: 0 done (healthy), 1 done but unhealthy or with messages left behind, 2 error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import boto3
import botocore.exceptions

from transflow._aws.errors import client_error_code, client_error_message
from transflow._version import __version__
from transflow._wire.model import converter
from transflow.config import CONFIG_FILENAME, TransflowConfig, load_config
from transflow.errors import (
    ConfigError,
    ConfirmationRequiredError,
    ProvisionWarning,
    TransflowError,
)
from transflow.ops import dlq, iam, metrics, provision, sam
from transflow.streaming.instances import sweep_instance_queues

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

__all__ = ["COMMAND_MODULES", "Command", "Context", "command", "main"]

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_ERROR = 2

COMMAND_MODULES: list[str] = [
    "transflow.cli.worker",
    "transflow.cli.local_command",
    "transflow.cli.demo.command",
]
"""Modules imported by :func:`main` so that the commands they register appear (for
example ``"transflow.cli.demo"``)."""

Runner = Callable[["Context"], int]
Configurer = Callable[[argparse.ArgumentParser], None]


@attrs.frozen
class Command:
    """A registered command: ``name`` is one word or ``"group action"``."""

    name: str
    help: str
    run: Runner
    configure: Configurer | None = None
    connection: tuple[str, ...] = ("config", "endpoint-url", "region")


CONNECTION_OPTIONS = ("config", "endpoint-url", "region")
_COMMANDS: dict[str, Command] = {}
_GROUP_HELP = {
    "queues": "create, inspect or delete the branch's queues",
    "dlq": "inspect, redrive or purge failed jobs",
}


def command(
    name: str,
    *,
    help: str,
    configure: Configurer | None = None,
    connection: tuple[str, ...] = CONNECTION_OPTIONS,
) -> Callable[[Runner], Runner]:
    """Register the decorated function as the command ``name``; ``configure`` adds its
    arguments to its parser, ``connection`` names which of ``--config``,
    ``--endpoint-url`` and ``--region`` it takes (so none is shown and then ignored). The
    function gets a :class:`Context` and returns the exit status."""
    if not 1 <= len(name.split()) <= 2:
        raise ValueError(f"command name {name!r} must be one word or 'group action'")
    unknown = set(connection) - set(CONNECTION_OPTIONS)
    if unknown:
        raise ValueError(f"command {name!r}: unknown connection options {sorted(unknown)}")

    def register(run: Runner) -> Runner:
        _COMMANDS[name] = Command(name, help, run, configure, tuple(connection))
        return run

    return register


@attrs.define
class Context:
    """What a command works with: its arguments, the configuration and boto3 clients
    bound to ``--endpoint-url`` and ``--region``, each made on first use."""

    args: argparse.Namespace
    out: TextIO = attrs.field(factory=lambda: sys.stdout)
    err: TextIO = attrs.field(factory=lambda: sys.stderr)
    _config: TransflowConfig | None = None
    _session: boto3.session.Session | None = None
    _clients: dict[str, Any] = attrs.field(factory=dict)

    @property
    def config(self) -> TransflowConfig:
        """The configuration from ``--config`` (or the working directory) and the
        environment."""
        if self._config is None:
            self._config = load_config(self.args.config)
        return self._config

    @property
    def region(self) -> str | None:
        """``--region``, else the configuration's, else boto3's default (None). A missing
        or broken configuration is the error to report first, before any region."""
        if self.args.region:
            return str(self.args.region)
        return self.config.region

    def session(self) -> boto3.session.Session:
        """The boto3 session, with the region resolved."""
        if self._session is None:
            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session().client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.args.endpoint_url,
            )
        return self._clients[service]

    def sqs(self) -> SQSClient:
        """An SQS client."""
        client: SQSClient = self._client("sqs")
        return client

    def sns(self) -> SNSClient:
        """An SNS client (fan-out mode's progress topic)."""
        client: SNSClient = self._client("sns")
        return client

    def s3(self) -> S3Client:
        """An S3 client."""
        client: S3Client = self._client("s3")
        return client

    def cloudwatch(self) -> CloudWatchClient:
        """A CloudWatch client."""
        client: CloudWatchClient = self._client("cloudwatch")
        return client

    def sts(self) -> STSClient:
        """An STS client."""
        client: STSClient = self._client("sts")
        return client

    def print(self, text: str = "") -> None:
        """A line on stdout."""
        print(text, file=self.out)

    def note(self, text: str) -> None:
        """A line on stderr (progress, warnings)."""
        print(text, file=self.err, flush=True)

    def print_json(self, data: Any) -> None:
        """JSON on stdout."""
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=self.out)


# -- parser -------------------------------------------------------------------------------


def _common(connection: tuple[str, ...]) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Options a command does not take still exist, as None, for Context.
    common.set_defaults(config=None, endpoint_url=None, region=None)
    if not connection:
        return common
    group = common.add_argument_group("connection")
    if "config" in connection:
        group.add_argument(
            "--config",
            metavar="PATH",
            help=f"the configuration file (default: ./{CONFIG_FILENAME}, else the environment)",
        )
    if "endpoint-url" in connection:
        group.add_argument(
            "--endpoint-url",
            metavar="URL",
            help="an SQS/S3-compatible endpoint instead of AWS (moto, LocalStack; default: "
            "AWS_ENDPOINT_URL, as 'transflow local' prints it)",
        )
    if "region" in connection:
        group.add_argument("--region", help="the AWS region (default: configuration, AWS_REGION)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="transflow",
        description=(
            "Run, watch and operate a transflow pipeline: queues, dead letters, health, "
            "workers and the demo."
        ),
    )
    parser.add_argument("--version", action="version", version=f"transflow {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for name in sorted(_COMMANDS):
        spec = _COMMANDS[name]
        common = _common(spec.connection)
        words = name.split()
        if len(words) == 1:
            sub = top.add_parser(name, help=spec.help, description=spec.help, parents=[common])
        else:
            group, action = words
            if group not in groups:
                group_parser = top.add_parser(group, help=_GROUP_HELP.get(group, group))
                groups[group] = group_parser.add_subparsers(
                    dest="action", metavar="ACTION", required=True
                )
            sub = groups[group].add_parser(
                action, help=spec.help, description=spec.help, parents=[common]
            )
        if spec.configure is not None:
            spec.configure(sub)
        sub.set_defaults(run=spec.run)
    return parser


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return "no AWS region: pass --region, set AWS_REGION, or put 'region' in the config"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials found: configure a profile or the AWS_* variables"
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return f"cannot reach the endpoint: {exc}"
    if isinstance(exc, botocore.exceptions.ClientError):
        return (
            f"{exc.operation_name} failed: {client_error_code(exc) or '?'}: "
            f"{client_error_message(exc)}"
        )
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``transflow`` command with ``argv`` (default: the process's arguments) and
    return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    context = Context(args)
    try:
        return int(args.run(context))
    except KeyboardInterrupt:
        context.note("transflow: interrupted")
        return 130
    except (
        TransflowError,
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
    ) as exc:
        context.note(f"transflow: error: {_error_line(exc)}")
        return EXIT_ERROR
    except OSError as exc:
        context.note(f"transflow: error: {_error_line(exc)}")
        return EXIT_ERROR


# -- init ---------------------------------------------------------------------------------


def _configure_init(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="the project name (part of every queue name)")
    parser.add_argument("--branch", default="main", help="the branch (default: main)")
    parser.add_argument("--visibility-timeout", type=int, default=960, metavar="SEC")
    parser.add_argument("--max-receive-count", type=int, default=3, metavar="N")
    parser.add_argument("--batch-size", type=int, default=10, metavar="N")
    parser.add_argument("--retention", type=int, default=14 * 24 * 3600, metavar="SEC")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def _ask(context: Context, question: str) -> str | None:
    if not sys.stdin.isatty():
        return None
    context.err.write(question)
    context.err.flush()
    return sys.stdin.readline().strip() or None


@command("init", help=f"write a {CONFIG_FILENAME}", configure=_configure_init)
def _init(context: Context) -> int:
    args = context.args
    path = Path(args.config or CONFIG_FILENAME)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} exists already: pass --force to overwrite it")
    project = args.project or _ask(context, "project name: ")
    if not project:
        raise ConfigError("a project name is needed: pass --project NAME")
    data: dict[str, Any] = {
        "project": project,
        "branch": args.branch,
        "sqs": {
            "visibilityTimeoutSec": args.visibility_timeout,
            "maxReceiveCount": args.max_receive_count,
            "batchSize": args.batch_size,
            "retentionSec": args.retention,
        },
    }
    if args.region:
        data["region"] = args.region
    text = json.dumps(data, indent=2) + "\n"
    # Checked by the loader itself before the file is written, so a bad flag leaves nothing.
    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / CONFIG_FILENAME
        trial.write_text(text, encoding="utf-8")
        config = load_config(trial, env={})
    path.write_text(text, encoding="utf-8")
    names = config.queue_names
    context.print(f"wrote {path}: queues {names.processing}, {names.progress}, {names.dlq}")
    return EXIT_OK


# -- queues -------------------------------------------------------------------------------


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
    _table(context, rows)
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


# -- dlq ----------------------------------------------------------------------------------


def _configure_peek(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--count", type=int, default=10, help="how many (default 10)")
    parser.add_argument(
        "--output-bucket", metavar="BUCKET", help="read each job's status record from it"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


@command("dlq peek", help="show failed jobs without consuming them", configure=_configure_peek)
def _dlq_peek(context: Context) -> int:
    urls = provision.resolve_queue_urls(context.sqs(), context.config)
    bucket = context.args.output_bucket
    jobs = dlq.peek(
        context.sqs(),
        urls.dlq,
        context.args.count,
        s3=context.s3() if bucket else None,
        output_bucket=bucket,
    )
    if context.args.json:
        context.print_json([converter.unstructure(job) for job in jobs])
        return EXIT_OK
    if not jobs:
        context.print("the dead-letter queue is empty")
        return EXIT_OK
    rows = [["upload", "template", "receives", "sent", "reason"]]
    context.note(
        "(SQS cannot look without receiving: this peek added one to each receive count; "
        "the counts shown are from before it)"
    )
    for job in jobs:
        rows.append(
            [
                job.upload_id or f"(message {job.message_id})",
                job.template_id or "-",
                str(job.receive_count),
                job.sent_at.strftime("%Y-%m-%d %H:%M:%S") if job.sent_at else "-",
                job.reason or job.body_error or "-",
            ]
        )
    _table(context, rows)
    return EXIT_OK


def _configure_announce(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--count", type=int, default=100, help="how many (default 100)")
    parser.add_argument(
        "--output-bucket", metavar="BUCKET", help="quote each job's recorded error from it"
    )


@command(
    "dlq announce",
    help="tell the browsers watching dead-lettered uploads that they failed for good",
    configure=_configure_announce,
)
def _dlq_announce(context: Context) -> int:
    config = context.config
    urls = provision.resolve_queue_urls(context.sqs(), config)
    bucket = context.args.output_bucket
    report = dlq.announce(
        context.sqs(),
        urls.dlq,
        None,
        context.args.count,
        s3=context.s3(),
        output_bucket=bucket,
        # In fan-out mode no hub reads the progress queue: the events go to the topic.
        progress=provision.progress_publisher(
            context.sqs(), config, sns=context.sns() if config.sqs.fanout else None
        ),
    )
    context.print(
        f"announced {len(report.announced)} dead-lettered upload(s)"
        + (f", {len(report.skipped)} message(s) name no upload" if report.skipped else "")
        + (f", {len(report.failed)} not sent" if report.failed else "")
    )
    return EXIT_UNHEALTHY if report.failed else EXIT_OK


def _configure_redrive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="move at most this many")
    parser.add_argument("--dry-run", action="store_true", help="count, move nothing")
    parser.add_argument(
        "--no-move-task",
        action="store_true",
        help="re-send from here instead of asking SQS for a message move task",
    )


@command(
    "dlq redrive",
    help="move failed jobs back to the processing queue",
    configure=_configure_redrive,
)
def _dlq_redrive(context: Context) -> int:
    sqs = context.sqs()
    urls = provision.resolve_queue_urls(sqs, context.config)

    # Progress only on a terminal, redrawn in place: the report below is the one line a log
    # or a pipe gets.
    live = context.err.isatty()

    def progress(step: dlq.RedriveProgress) -> None:
        if live:
            of = f"/{step.limit}" if step.limit else ""
            context.err.write(f"\rredrive: {step.moved}{of} moved, {step.failed} left behind")
            context.err.flush()

    report = dlq.redrive(
        sqs,
        urls.dlq,
        urls.processing,
        limit=context.args.limit,
        dry_run=context.args.dry_run,
        use_move_task=False if context.args.no_move_task else None,
        max_bytes=context.config.sqs.max_message_bytes,
        on_progress=progress,
    )
    if live:
        context.err.write("\r\x1b[2K")
    if report.mode == "dry-run":
        context.print(f"dry run: {report.moved} job(s) would move back to {urls.processing}")
    elif report.mode == "move-task":
        context.print(
            f"SQS is moving about {report.moved} job(s) back (task {report.task_handle}); "
            "'transflow status' shows the DLQ draining"
        )
    else:
        context.print(f"moved {report.moved} job(s) back to {urls.processing}")
    for failure in report.failed:
        context.note(f"left in the DLQ: {failure.key}: {failure.code}: {failure.message}")
    return EXIT_OK if report.ok else EXIT_UNHEALTHY


def _configure_purge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="confirm: delete every failed job")


@command("dlq purge", help="delete every failed job", configure=_configure_purge)
def _dlq_purge(context: Context) -> int:
    sqs = context.sqs()
    url = provision.resolve_queue_urls(sqs, context.config).dlq
    name = url.rstrip("/").rsplit("/", 1)[-1]
    confirm = name if context.args.yes else _ask(context, f"type {name} to purge it: ")
    if confirm is None:
        raise ConfirmationRequiredError(
            f"purging {name} deletes every failed job in it: pass --yes to go ahead"
        )
    count = dlq.purge(sqs, url, confirm=confirm)
    context.print(f"purged {name} (about {count} message(s))")
    return EXIT_OK


# -- status -------------------------------------------------------------------------------


def _configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--cloudwatch",
        action="store_true",
        help="also read the oldest message's age and the backlog trend from CloudWatch",
    )
    parser.add_argument("--max-dlq", type=int, default=0, metavar="N")
    parser.add_argument("--max-age", type=float, default=900.0, metavar="SEC")
    parser.add_argument("--max-backlog", type=int, metavar="N")


def _depth_json(depth: metrics.QueueDepth) -> dict[str, Any]:
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
    stats = metrics.queue_stats(
        sqs, urls, cloudwatch=context.cloudwatch() if context.args.cloudwatch else None
    )
    verdict = metrics.health(
        stats,
        metrics.HealthThresholds(
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
                "queues": {
                    "processing": _depth_json(stats.processing),
                    "progress": _depth_json(stats.progress),
                    "dlq": _depth_json(stats.dlq),
                },
                "oldestAgeSec": stats.oldest_age_sec,
                "backlogTrend": list(stats.backlog_trend),
                "takenAt": stats.taken_at.isoformat(),
            }
        )
    else:
        rows = [["queue", "name", "visible", "in flight", "delayed"]]
        for role in provision.ROLES:
            depth: metrics.QueueDepth = getattr(stats, role)
            rows.append(
                [role, depth.name, str(depth.visible), str(depth.in_flight), str(depth.delayed)]
            )
        _table(context, rows)
        if stats.oldest_age_sec is not None:
            context.print(f"oldest job waiting: {stats.oldest_age_sec:.0f}s")
        context.print()
        if verdict.healthy:
            context.print("healthy")
        for problem in verdict.problems:
            context.print(f"UNHEALTHY [{problem.code}] {problem.message}")
            context.print(f"  -> {problem.hint}")
    return EXIT_OK if verdict.healthy else EXIT_UNHEALTHY


# -- iam-policy and sam ---------------------------------------------------------------------


def _configure_buckets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upload-bucket", required=True, metavar="BUCKET")
    parser.add_argument("--output-bucket", metavar="BUCKET", help="default: the upload bucket")
    parser.add_argument(
        "--claim-check-prefix",
        metavar="PREFIX",
        help="where the bridge stores jobs too large for a message (in the output bucket)",
    )


def _configure_iam(parser: argparse.ArgumentParser) -> None:
    _configure_buckets(parser)
    parser.add_argument("--account-id", help="default: the caller's account (STS)")
    parser.add_argument("--partition", default="aws")
    parser.add_argument(
        "--role",
        choices=["all", "bridge", "processor", "stream", "operator", "recovery"],
        default="all",
        help="which document (default: all, by role)",
    )


@command("iam-policy", help="least-privilege IAM policy documents", configure=_configure_iam)
def _iam_policy(context: Context) -> int:
    args = context.args
    account = args.account_id or context.sts().get_caller_identity()["Account"]
    region = context.region or context.session().region_name
    if not region:
        raise ConfigError("no AWS region: pass --region or set AWS_REGION")
    policies = iam.iam_policies(
        context.config,
        account,
        region,
        upload_bucket=args.upload_bucket,
        output_bucket=args.output_bucket,
        partition=args.partition,
        claim_check_prefix=args.claim_check_prefix,
    )
    documents = policies.by_role()
    context.print_json(documents if args.role == "all" else documents[args.role])
    return EXIT_OK


def _configure_sam(parser: argparse.ArgumentParser) -> None:
    _configure_buckets(parser)
    parser.add_argument("--code-uri", default=".", help="the functions' code (default: .)")
    parser.add_argument("--bridge-handler", default="app.bridge_handler")
    parser.add_argument("--processor-handler", default="app.processor_handler")
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--function-timeout", type=int, metavar="SEC")
    parser.add_argument("--memory", type=int, default=1024, metavar="MB")
    parser.add_argument("--maximum-concurrency", type=int, metavar="N")
    parser.add_argument(
        "--bridge-trigger",
        choices=["queue", "s3"],
        default="queue",
        help="queue: S3 notifies a standard queue with a DLQ (default); s3: S3 invokes the "
        "bridge directly (lossy: an event failing Lambda's retries is dropped)",
    )
    parser.add_argument(
        "--recovery-handler",
        default="app.recovery_handler",
        help="the scheduled recovery function's handler; 'none' for no such function",
    )
    parser.add_argument(
        "--stale-upload-age", type=int, default=3600, metavar="SEC", help="default: 3600"
    )
    parser.add_argument("--alarm-topic-arn", metavar="ARN", help="SNS topic the alarms notify")
    parser.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")


@command("sam", help="an AWS SAM template for the pipeline", configure=_configure_sam)
def _sam(context: Context) -> int:
    args = context.args
    if args.output and Path(args.output).exists() and not args.force:
        raise ConfigError(f"{args.output} exists already: pass --force to overwrite it")
    text = sam.sam_template(
        context.config,
        upload_bucket=args.upload_bucket,
        output_bucket=args.output_bucket,
        code_uri=args.code_uri,
        bridge_handler=args.bridge_handler,
        processor_handler=args.processor_handler,
        runtime=args.runtime,
        function_timeout_sec=args.function_timeout,
        memory_mb=args.memory,
        maximum_concurrency=args.maximum_concurrency,
        claim_check_prefix=args.claim_check_prefix,
        bridge_trigger=args.bridge_trigger,
        recovery_handler=None if args.recovery_handler == "none" else args.recovery_handler,
        stale_upload_age_sec=args.stale_upload_age,
        alarm_topic_arn=args.alarm_topic_arn,
    )
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        context.note(f"wrote {args.output}")
    else:
        context.out.write(text)
    return EXIT_OK


def _table(context: Context, rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        context.print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
