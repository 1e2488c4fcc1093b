"""Write the AWS SAM template that deploys one project and branch: copy and adapt.

The template holds the three FIFO queues (exactly as ``transflow queues ensure`` makes them),
the upload bucket, whose ``s3:ObjectCreated:*`` notifications under ``uploads/{branch}/``
go to the standard queue ``{project}-{branch}-uploads`` (with its own dead-letter queue) that
the bridge function reads in batches, the processor function (an SQS event source with
``ReportBatchItemFailures``), a scheduled recovery function, CloudWatch alarms and
least-privilege roles. It expects the three example handlers copied into ``src/``::

    src/lambda_bridge.py       (examples/lambda_bridge.py)     handler: lambda_bridge.handler
    src/lambda_processor.py    (examples/lambda_processor.py)  handler: lambda_processor.handler
    src/lambda_recovery.py     (examples/lambda_recovery.py)   handler: lambda_recovery.handler

Write it, then deploy with the SAM CLI::

    python -m examples.sam_template -o template.yaml             # myapp, branch main
    python -m examples.sam_template --config transflow.config.json --upload-bucket my-uploads
    sam build && sam deploy --guided

``transflow sam`` on the command line does the same with more options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transflow import SqsConfig, TransflowConfig, load_config
from transflow.ops.sam import sam_template

BRIDGE_HANDLER = "lambda_bridge.handler"
PROCESSOR_HANDLER = "lambda_processor.handler"
RECOVERY_HANDLER = "lambda_recovery.handler"


def build_template(
    config: TransflowConfig, *, upload_bucket: str, output_bucket: str, code_uri: str = "src/"
) -> str:
    """The template's YAML text for ``config``'s project and branch."""
    return sam_template(
        config,
        upload_bucket=upload_bucket,
        output_bucket=output_bucket,
        code_uri=code_uri,
        bridge_handler=BRIDGE_HANDLER,
        processor_handler=PROCESSOR_HANDLER,
        recovery_handler=RECOVERY_HANDLER,
        # The processor's timeout defaults to a sixth of sqs.visibilityTimeoutSec (AWS's
        # guidance for SQS triggers); a larger one is refused rather than deployed.
        memory_mb=1024,
        # Caps how many processors the queue runs at once: protects what the steps call.
        maximum_concurrency=50,
    )


def main(argv: list[str] | None = None) -> Path:
    """Write the template and return where it went."""
    parser = argparse.ArgumentParser(description="Write the SAM template of a transflow branch.")
    parser.add_argument("--config", type=Path, help="transflow.config.json (default: myapp/main)")
    parser.add_argument("--upload-bucket", default="myapp-uploads")
    parser.add_argument("--output-bucket", default="myapp-outputs")
    parser.add_argument("-o", "--output", type=Path, default=Path("template.yaml"))
    args = parser.parse_args(argv)

    if args.config is not None:
        config = load_config(args.config)
    else:
        # The spec's queue settings: 960 s visibility (so a 160 s function), 3 receives.
        config = TransflowConfig(
            project="myapp",
            branch="main",
            sqs=SqsConfig(visibility_timeout_sec=960, max_receive_count=3, batch_size=10),
        )
    text = build_template(
        config, upload_bucket=args.upload_bucket, output_bucket=args.output_bucket
    )
    args.output.write_text(text, encoding="utf-8")
    names = config.queue_names
    print(f"wrote {args.output}: {config.project}/{config.branch}")
    print(f"  queues   {names.processing}, {names.progress}, {names.dlq}")
    print(f"  buckets  {args.upload_bucket} (uploads), {args.output_bucket} (outputs)")
    print("next: sam build && sam deploy --guided")
    return Path(args.output)


if __name__ == "__main__":
    main()
