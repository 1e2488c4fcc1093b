"""``transflow worker``: run the processing queue with your templates, outside Lambda."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import botocore.exceptions

from transflow._aws.errors import client_error_code
from transflow._aws.logs import configure_logging
from transflow._aws.poller import poller_client_config
from transflow.cli.app import Context, command
from transflow.errors import ConfigError
from transflow.ops.provision import resolve_progress_destination, resolve_queue_urls
from transflow.processing.processor import JobProcessor
from transflow.processing.templates import TemplateRegistry
from transflow.processing.webhooks import WebhookSender
from transflow.processing.worker import DEFAULT_VISIBILITY_TIMEOUT, make_worker, run_worker

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["load_registry", "webhook_sender"]


def load_registry(spec: str) -> TemplateRegistry:
    """``package.module:name``: a TemplateRegistry, or a function of no arguments that
    returns one. The module is looked up from the working directory first, as ``python -m``,
    uvicorn and gunicorn do (the ``transflow`` script's own folder is what Python would
    search otherwise)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--templates {spec!r}: expected 'package.module:registry'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the module's: one line
        raise ConfigError(
            f"--templates {spec!r}: cannot import {module_name} ({type(exc).__name__}: {exc})"
        ) from exc
    if not hasattr(module, attribute):
        raise ConfigError(f"--templates {spec!r}: {module_name} has no attribute {attribute!r}")
    found = getattr(module, attribute)
    if callable(found) and not isinstance(found, TemplateRegistry):
        try:
            found = found()
        except Exception as exc:  # the user's factory's: one line
            raise ConfigError(
                f"--templates {spec!r}: calling {attribute}() failed ({type(exc).__name__}: "
                f"{exc}); name a TemplateRegistry or a function of no arguments returning one"
            ) from exc
    if not isinstance(found, TemplateRegistry):
        raise ConfigError(
            f"--templates {spec!r}: {attribute} is a {type(found).__name__}, not a "
            "TemplateRegistry (or a function of no arguments returning one)"
        )
    return found


def _check_output_buckets(ctx: Context, registry: TemplateRegistry) -> None:
    """Every job would fail on a missing output bucket, each attempt with the same error:
    say it once, at start."""
    named = {t.output_bucket for t in registry if t.output_bucket}
    if ctx.args.output_bucket:
        named.add(ctx.args.output_bucket)
    for bucket in sorted(named):
        try:
            ctx.s3().head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as exc:
            code = client_error_code(exc)
            # Only a missing bucket stops the worker: a role without s3:ListBucket gets a 403
            # for a bucket it may well write to.
            if code in ("404", "NoSuchBucket"):
                raise ConfigError(
                    f"output bucket {bucket!r} does not exist: create it (aws s3 mb "
                    f"s3://{bucket}) or pass --output-bucket with one that does"
                ) from exc


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--templates",
        required=True,
        metavar="MODULE:NAME",
        help="where your TemplateRegistry is, e.g. myapp.templates:registry; the module is "
        "found from the current directory first, as with 'python -m'",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once (default 4)")
    parser.add_argument(
        "--output-bucket",
        metavar="BUCKET",
        help="for templates that do not name one (checked to exist at start)",
    )
    parser.add_argument(
        "--upload-bucket",
        default=os.environ.get("TRANSFLOW_UPLOAD_BUCKET") or None,
        help="the bridge's upload bucket (default: $TRANSFLOW_UPLOAD_BUCKET; required): "
        "inputs are read from the job's own folder of it only",
    )
    parser.add_argument(
        "--claim-bucket",
        action="append",
        default=None,
        help="a bucket the bridge stores claim checks in (repeatable; default: the upload "
        "and output buckets); claim checks elsewhere are refused",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=DEFAULT_VISIBILITY_TIMEOUT,
        metavar="SEC",
        help=f"held between heartbeats (default {DEFAULT_VISIBILITY_TIMEOUT})",
    )
    parser.add_argument(
        "--job-timeout", type=float, metavar="SEC", help="give up on a job after this long"
    )
    parser.add_argument(
        "--poll-wait",
        type=int,
        default=20,
        choices=range(21),
        metavar="SEC",
        help="long-poll wait, 0-20 (default 20); a stop waits for the poll in flight",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SEC",
        help="on SIGTERM, wait this long for running jobs (default 30)",
    )
    # Webhook destinations: https to public addresses unless these say otherwise.
    parser.add_argument(
        "--webhook-allow-http",
        action="store_true",
        help="let webhooks use cleartext http (refused by default)",
    )
    parser.add_argument(
        "--webhook-allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a webhook host trusted whatever private address it resolves to (repeatable)",
    )
    parser.add_argument(
        "--webhook-allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="a private network webhooks may reach, e.g. 10.1.0.0/16 (repeatable)",
    )


def webhook_sender(args: argparse.Namespace, registry: TemplateRegistry) -> WebhookSender:
    """The worker's webhook sender, from its ``--webhook-*`` options; every template's
    webhook_url is checked against it now, before anything touches AWS."""
    sender = WebhookSender(
        allow_http=args.webhook_allow_http,
        allowed_hosts=args.webhook_allow_host,
        allowed_networks=args.webhook_allow_network,
    )
    for template in registry:
        if template.webhook_url:
            sender.check_url(template.webhook_url)
    return sender


@command("worker", help="run jobs from the processing queue until SIGTERM", configure=_configure)
def worker_command(ctx: Context) -> int:
    # Text lines, or JSON with TRANSFLOW_LOG_FORMAT=json; each carries the job's fields. As
    # basicConfig did: a process whose logging is set up already keeps it.
    if not logging.getLogger().handlers:
        configure_logging(level=logging.INFO)
    # Their INFO lines ("Found credentials in environment variables") are not the worker's
    # news; here only, never in the library, which leaves logging to its host.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    registry = load_registry(ctx.args.templates)
    webhooks = webhook_sender(ctx.args, registry)
    if not ctx.args.upload_bucket:
        raise ConfigError(
            "transflow worker needs the upload bucket: pass --upload-bucket or set "
            "TRANSFLOW_UPLOAD_BUCKET (jobs are only read from it)"
        )
    config = ctx.config
    _check_output_buckets(ctx, registry)
    urls = resolve_queue_urls(ctx.sqs(), config)
    sqs: SQSClient = ctx.session().client(
        "sqs",
        endpoint_url=ctx.args.endpoint_url,
        config=poller_client_config(ctx.args.concurrency),
    )
    sns = ctx.sns() if config.sqs.fanout else None
    processor = JobProcessor(
        registry,
        s3_client=ctx.s3(),
        sqs_client=sqs,
        progress=resolve_progress_destination(sqs, config, sns=sns),
        sns_client=sns,
        upload_bucket=ctx.args.upload_bucket,
        output_bucket=ctx.args.output_bucket,
        claim_buckets=ctx.args.claim_bucket,
        max_receive_count=config.sqs.max_receive_count,
        webhooks=webhooks,
    )
    worker = make_worker(
        processor,
        sqs,
        urls.processing,
        concurrency=ctx.args.concurrency,
        visibility_timeout=ctx.args.visibility_timeout,
        handler_timeout=ctx.args.job_timeout,
        drain_timeout=ctx.args.drain_timeout,
        wait_time_seconds=ctx.args.poll_wait,
    )
    ctx.note(
        f"transflow worker: {urls.processing} with {ctx.args.concurrency} at once "
        f"(templates: {', '.join(registry.ids)}); SIGTERM drains"
    )
    # The poller logs its stop line with the stats once, at INFO.
    run_worker(worker)
    return 0
