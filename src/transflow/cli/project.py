"""``transflow init``, ``iam-policy`` and ``sam``: set up a project, and what deploying it
needs (least-privilege policies, a SAM template)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from transflow.cli.app import EXIT_OK, Context, command
from transflow.cli.regions import check_region
from transflow.config import CONFIG_FILENAME, load_config
from transflow.errors import ConfigError
from transflow.ops.iam import iam_policies
from transflow.ops.sam import SamOptions, sam_template

__all__: list[str] = []


# -- init -------------------------------------------------------------------------------


def _configure_init(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="the project name (part of every queue name)")
    parser.add_argument("--branch", default="main", help="the branch (default: main)")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=960,
        metavar="SEC",
        help="the processing queue's visibility timeout: at least six times the processing "
        "function's timeout (default 960)",
    )
    parser.add_argument(
        "--max-receive-count",
        type=int,
        default=3,
        metavar="N",
        help="deliveries a job gets before it moves to the dead-letter queue (default 3)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=10,
        metavar="N",
        help="jobs per Lambda invocation of the processor, 1-10 (default 10)",
    )
    parser.add_argument(
        "--retention",
        type=int,
        default=14 * 24 * 3600,
        metavar="SEC",
        help="how long the queues keep a message, 60-1209600 (default 1209600: 14 days)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


@command("init", help=f"write a {CONFIG_FILENAME}", configure=_configure_init)
def _init(context: Context) -> int:
    args = context.args
    path = Path(args.config or CONFIG_FILENAME)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} exists already: pass --force to overwrite it")
    project = args.project or context.ask("project name: ")
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
        data["region"] = check_region(args.region)
    text = json.dumps(data, indent=2) + "\n"
    # Checked by the loader itself before the file is written, so a bad flag leaves nothing.
    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / CONFIG_FILENAME
        trial.write_text(text, encoding="utf-8")
        try:
            config = load_config(trial, env={})
        except ConfigError as exc:
            # The problems are the flags' and the file to be is the one the user named.
            raise ConfigError(str(exc).replace(str(trial), str(path))) from exc
    path.write_text(text, encoding="utf-8")
    names = config.queue_names
    context.print(f"wrote {path}: queues {names.processing}, {names.progress}, {names.dlq}")
    return EXIT_OK


# -- iam-policy and sam -----------------------------------------------------------------


def _configure_buckets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upload-bucket",
        required=True,
        metavar="BUCKET",
        help="the bucket browsers upload to (required)",
    )
    parser.add_argument(
        "--output-bucket",
        metavar="BUCKET",
        help="the bucket templates write to (default: the upload bucket)",
    )
    parser.add_argument(
        "--claim-check-prefix",
        metavar="PREFIX",
        help="where the bridge stores jobs too large for a message (in the output bucket)",
    )


def _configure_iam(parser: argparse.ArgumentParser) -> None:
    _configure_buckets(parser)
    parser.add_argument("--account-id", help="default: the caller's account (STS)")
    parser.add_argument(
        "--partition",
        default="aws",
        help="the ARN partition: aws, aws-cn or aws-us-gov (default aws)",
    )
    parser.add_argument(
        "--role",
        choices=["all", "bridge", "processor", "stream", "operator", "recovery", "uploads"],
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
    policies = iam_policies(
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
    parser.add_argument(
        "--bridge-handler",
        default="app.bridge_handler",
        help="the grouping bridge's Lambda handler, module.function (default app.bridge_handler)",
    )
    parser.add_argument(
        "--processor-handler",
        default="app.processor_handler",
        help="the job processor's Lambda handler (default app.processor_handler)",
    )
    parser.add_argument(
        "--runtime", default="python3.12", help="the functions' Lambda runtime (default python3.12)"
    )
    parser.add_argument(
        "--function-timeout",
        type=int,
        metavar="SEC",
        help="the processor's timeout (default: a sixth of the visibility timeout)",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=1024,
        metavar="MB",
        help="the processor's memory, 128-10240 (default 1024)",
    )
    parser.add_argument(
        "--maximum-concurrency",
        type=int,
        metavar="N",
        help="the most processor instances the queue may run at once, 2-1000 (default: no limit)",
    )
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
        help="the scheduled recovery function's handler; 'none' for no such function "
        "(default app.recovery_handler)",
    )
    parser.add_argument(
        "--stale-upload-age", type=int, default=3600, metavar="SEC", help="default: 3600"
    )
    parser.add_argument("--alarm-topic-arn", metavar="ARN", help="SNS topic the alarms notify")
    parser.add_argument(
        "--abort-incomplete-multipart-days",
        type=int,
        default=7,
        metavar="DAYS",
        help="abort multipart uploads left incomplete this long (default 7)",
    )
    parser.add_argument(
        "--upload-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin whose pages upload (https://app.example.com): adds the bucket's "
        "CORS rule for POST and part PUTs; repeat for more",
    )
    parser.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")


@command("sam", help="an AWS SAM template for the pipeline", configure=_configure_sam)
def _sam(context: Context) -> int:
    args = context.args
    if args.output and Path(args.output).exists() and not args.force:
        raise ConfigError(f"{args.output} exists already: pass --force to overwrite it")
    options = SamOptions(
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
        abort_incomplete_multipart_days=args.abort_incomplete_multipart_days,
        upload_origins=tuple(args.upload_origin),
    )
    text = sam_template(context.config, options)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        context.note(f"wrote {args.output}")
    else:
        context.out.write(text)
    return EXIT_OK
