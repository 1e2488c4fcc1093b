"""``transflow demo`` and ``transflow dev``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading

from transflow.cli.app import EXIT_OK, EXIT_UNHEALTHY, Context, command
from transflow.cli.demo.run import print_summary, run_demo
from transflow.cli.demo.stack import DemoSettings, DemoStack
from transflow.cli.regions import check_region

__all__: list[str] = []


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a share between 0 and 1 (0.5 fails half the uploads)"
        )
    return value


def _files(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text}: choose 1 to 1000 files")
    return value


def _endpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("endpoint")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="run against this SQS/S3 endpoint (LocalStack, AWS) instead of an embedded one",
    )
    group.add_argument("--region", default="us-east-1", help="its region (default us-east-1)")


def _fail_rate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-rate",
        type=_rate,
        default=0.0,
        metavar="P",
        help="share of uploads that fail, to show retries and the DLQ (0-1, default 0)",
    )


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    _endpoint_options(parser)
    parser.add_argument("--files", type=_files, default=6, help="sample files (default 6)")
    _fail_rate_option(parser)
    parser.add_argument("--json", action="store_true", help="print only a JSON summary")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SEC",
        help="give up on the uploads after this long (default 120)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's log")


def _logging(verbose: bool) -> None:
    # Failed attempts are the point of --fail-rate: the bars show them; the log is opt-in.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.CRITICAL,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@command(
    "demo",
    help="run the whole pipeline on an embedded endpoint and watch it (needs the 'local' extra)",
    configure=_configure_demo,
    connection=(),
)
def demo_command(ctx: Context) -> int:
    check_region(ctx.args.region)
    _logging(ctx.args.verbose)
    report = run_demo(
        files=ctx.args.files,
        fail_rate=ctx.args.fail_rate,
        out=ctx.out,
        quiet=ctx.args.json,
        timeout=ctx.args.timeout,
        settings=DemoSettings(endpoint_url=ctx.args.endpoint_url, region=ctx.args.region),
    )
    if ctx.args.json:
        ctx.print(json.dumps(report.to_dict(), indent=2))
    else:
        print_summary(report, ctx.out)
    return EXIT_OK if report.ok else EXIT_UNHEALTHY


def _configure_dev(parser: argparse.ArgumentParser) -> None:
    _endpoint_options(parser)
    parser.add_argument("--port", type=int, default=8700, help="the page's port (default 8700)")
    parser.add_argument(
        "--project", default="transflow-dev", help="queue name prefix (default transflow-dev)"
    )
    parser.add_argument("--branch", default="main", help="the branch (default main)")
    parser.add_argument(
        "--upload-bucket",
        default="transflow-dev-uploads",
        metavar="BUCKET",
        help="where the page uploads to (default transflow-dev-uploads; created if missing)",
    )
    parser.add_argument(
        "--output-bucket",
        default="transflow-dev-outputs",
        metavar="BUCKET",
        help="where the templates write (default transflow-dev-outputs; created if missing)",
    )
    _fail_rate_option(parser)
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's log")


@command(
    "dev",
    help="keep the pipeline running with a web page to upload files and watch progress",
    configure=_configure_dev,
    connection=(),
)
def dev_command(ctx: Context) -> int:
    check_region(ctx.args.region)
    _logging(ctx.args.verbose)
    settings = DemoSettings(
        project=ctx.args.project,
        branch=ctx.args.branch,
        upload_bucket=ctx.args.upload_bucket,
        output_bucket=ctx.args.output_bucket,
        endpoint_url=ctx.args.endpoint_url,
        region=ctx.args.region,
        fail_rate=ctx.args.fail_rate,
        http_port=ctx.args.port,
        poll_wait=1 if ctx.args.endpoint_url is None else 20,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with DemoStack(settings) as stack:
        ctx.note(
            f"transflow dev: open {stack.http_url}/ (endpoint {stack.endpoint_url}); Ctrl-C stops"
        )
        stop.wait()
        ctx.note("transflow dev: stopping")
    return EXIT_OK
