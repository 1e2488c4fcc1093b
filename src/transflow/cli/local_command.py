"""``transflow local``: the embedded SQS/S3 endpoint for the command line and your code."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from pathlib import Path

from transflow.cli.app import EXIT_OK, Context, command
from transflow.cli.local import DUMMY_REGION, LocalAws, local_environment
from transflow.cli.regions import check_region

__all__: list[str] = []

DEFAULT_PORT = 4580
"""``transflow local``'s port: fixed, so that the printed environment stays valid across
restarts (moto's own default, 5000, is often taken)."""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the loopback port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="also write the environment to this file, as 'export' lines to source",
    )
    parser.add_argument(
        "--region", default=DUMMY_REGION, help=f"the region to print (default {DUMMY_REGION})"
    )


@command(
    "local",
    help="run an embedded SQS/S3 endpoint (moto's server) until Ctrl-C and print the "
    "environment that points boto3 and the transflow command at it (needs the 'local' extra)",
    configure=_configure,
    connection=(),
)
def local_command(ctx: Context) -> int:
    region = check_region(str(ctx.args.region))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with LocalAws(port=ctx.args.port, region=region) as aws:
        lines = [
            f"export {name}={shlex.quote(value)}"
            for name, value in local_environment(aws.endpoint_url, region).items()
        ]
        text = "\n".join(lines) + "\n"
        ctx.out.write(text)
        ctx.out.flush()
        if ctx.args.env_file:
            Path(ctx.args.env_file).write_text(text, encoding="utf-8")
        ctx.note(
            f"transflow local: SQS and S3 on {aws.endpoint_url} (region {region}, dummy "
            "credentials). In another shell, run the export lines above"
            + (f" (or: source {ctx.args.env_file})" if ctx.args.env_file else "")
            + ", then 'transflow init' and 'transflow queues ensure'. Ctrl-C stops it; its "
            "queues and buckets live in memory and are lost."
        )
        stop.wait()
        ctx.note("transflow local: stopped")
    return EXIT_OK
