"""``transflow cancel UPLOAD_ID``: mark an upload cancelled in its status record.

Exit status: 0 cancelled (now or before), 1 too late (the job completed first), 2 error.
"""

from __future__ import annotations

import argparse

from transflow.cli.app import EXIT_OK, EXIT_UNHEALTHY, Context, command
from transflow.processing.cancellation import CancelOutcome, cancel_upload

__all__: list[str] = []


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("upload_id", metavar="UPLOAD_ID", help="the upload to cancel")
    parser.add_argument(
        "--bucket",
        required=True,
        help="the output bucket, where the upload's status record is",
    )
    parser.add_argument("--branch", help="the upload's branch (default: the configuration's)")
    parser.add_argument(
        "--user", metavar="USER_ID", help="the upload's user id, as given to create_upload"
    )
    parser.add_argument(
        "--delete-outputs",
        action="store_true",
        help="delete the outputs the job wrote (now, and those it writes before it stops)",
    )
    parser.add_argument("--reason", help="kept in the record's message (default: cancelled)")


@command(
    "cancel",
    help="cancel an upload: the bridge does not queue it, the processor stops before its next step",
    configure=_configure,
)
def cancel_command(ctx: Context) -> int:
    args = ctx.args
    branch = args.branch or ctx.config.branch
    result = cancel_upload(
        ctx.s3(),
        bucket=args.bucket,
        branch=branch,
        upload_id=args.upload_id,
        user_id=args.user,
        delete_outputs=args.delete_outputs,
        reason=args.reason,
    )
    where = f"upload {result.upload_id} (branch {branch})"
    if result.outcome is CancelOutcome.TOO_LATE:
        ctx.print(f"{where}: too late, the job completed at {result.record.last_updated}")
        return EXIT_UNHEALTHY
    if result.outcome is CancelOutcome.ALREADY_CANCELED:
        ctx.print(f"{where}: already cancelled at {result.record.last_updated}")
        return EXIT_OK
    outputs = sum(len(r) for r in result.record.results.values())
    ctx.print(
        f"{where}: cancelled; {outputs} output(s) listed"
        + (f", {len(result.deleted)} deleted" if args.delete_outputs else "")
    )
    return EXIT_OK
