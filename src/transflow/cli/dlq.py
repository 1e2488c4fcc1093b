"""``transflow dlq …``: inspect, announce, redrive or purge the jobs in the dead-letter
queue."""

from __future__ import annotations

import argparse

from transflow._wire.model import converter
from transflow.cli.app import EXIT_OK, EXIT_UNHEALTHY, Context, command
from transflow.errors import ConfirmationRequiredError
from transflow.ops import announce, dlq, provision, redrive

__all__: list[str] = []


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
    context.table(rows)
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
    # In fan-out mode no hub reads the progress queue: the events go to the topic.
    sns = context.sns() if config.sqs.fanout else None
    report = announce.announce(
        context.sqs(),
        urls.dlq,
        provision.resolve_progress_destination(context.sqs(), config, sns=sns),
        context.args.count,
        sns=sns,
        s3=context.s3(),
        output_bucket=bucket,
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

    def progress(step: redrive.RedriveProgress) -> None:
        if live:
            of = f"/{step.limit}" if step.limit else ""
            context.err.write(f"\rredrive: {step.moved}{of} moved, {step.failed} left behind")
            context.err.flush()

    report = redrive.redrive(
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
        how = (
            " (re-sent by this command: the endpoint has no StartMessageMoveTask)"
            if report.no_move_task
            else ""
        )
        context.print(f"moved {report.moved} job(s) back to {urls.processing}{how}")
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
    confirm = name if context.args.yes else context.ask(f"type {name} to purge it: ")
    if confirm is None:
        raise ConfirmationRequiredError(
            f"purging {name} deletes every failed job in it: pass --yes to go ahead"
        )
    count = dlq.purge(sqs, url, confirm=confirm)
    context.print(f"purged {name} (about {count} message(s))")
    return EXIT_OK
