"""The ``transflow`` command's registry, parser and context: the commands themselves live
in the modules of :data:`COMMAND_MODULES`.

Commands live in a registry: :func:`command` registers a function under a name such as
``"status"`` or ``"dlq peek"`` (a group and an action), and :func:`main` builds the argparse
parser from it. A module that adds commands (``project``: init, iam-policy and sam;
``queues``: the queues and their health; ``dlq``; ``worker``; ``cancel``; ``local``;
``demo`` and ``dev``) registers them with :func:`command` and is named in
:data:`COMMAND_MODULES`, which :func:`main` imports. A command takes ``--config``,
``--endpoint-url`` and ``--region`` unless it names fewer (``connection``); an error is
one line on stderr, without a traceback.

Exit status: 0 done (healthy), 1 done but unhealthy or with messages left behind, 2 error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import boto3
import botocore.exceptions

from transflow._aws.errors import client_error_code, client_error_message
from transflow._version import __version__
from transflow.cli.regions import check_region
from transflow.config import CONFIG_FILENAME, TransflowConfig, load_config
from transflow.errors import TransflowError

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
    "transflow.cli.project",
    "transflow.cli.queues",
    "transflow.cli.dlq",
    "transflow.cli.worker",
    "transflow.cli.local_command",
    "transflow.cli.secret",
    "transflow.cli.cancel",
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
            region = self.region
            if region is not None:
                check_region(region, "--region" if self.args.region else "region")
            self._session = boto3.session.Session(region_name=region)
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

    def table(self, rows: list[list[str]]) -> None:
        """Rows on stdout, in columns as wide as their widest cell (the first row is the
        heading)."""
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )

    def ask(self, question: str) -> str | None:
        """The answer typed on a terminal, or None (no terminal, or an empty answer)."""
        if not sys.stdin.isatty():
            return None
        self.err.write(question)
        self.err.flush()
        return sys.stdin.readline().strip() or None


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
                group_help = _GROUP_HELP.get(group, group)
                group_parser = top.add_parser(group, help=group_help, description=group_help)
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
