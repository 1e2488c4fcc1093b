"""``transflow demo``: the whole pipeline on an embedded endpoint, watched as a browser would.

Sample files are made, uploaded through presigned POSTs over HTTP (one upload holds several
files), grouped by the bridge, processed by a worker, and followed over SSE with a progress
bar per upload. The summary counts what completed, what was dead-lettered, the outputs and
the SQS requests each upload cost: from the first upload to the last one's end, without
provisioning and without idle long polls (empty receives, counted apart: their number follows
wall time, not the work).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs

from transflow._wire.channels import upload_channel
from transflow.cli.demo.client import UploadFollower, post_file, post_json
from transflow.cli.demo.samples import write_document, write_tone
from transflow.cli.demo.stack import DemoSettings, DemoStack
from transflow.cli.demo.templates import AUDIO_TEMPLATE, DOCUMENT_TEMPLATE
from transflow.streaming.snapshot import UploadState, UploadStatus

__all__ = ["DemoReport", "UploadPlan", "plan_uploads", "run_demo"]

MULTI_FILE_UPLOAD = 3
_BAR = 28  # characters


@attrs.frozen
class UploadPlan:
    """One upload of the demo: its template and its files."""

    template_id: str
    files: tuple[Path, ...]


def plan_uploads(folder: Path, files: int) -> list[UploadPlan]:
    """Make ``files`` sample files in ``folder`` and group them into uploads: the first
    upload carries several WAV files at once, the rest one file each, audio and documents
    in turn."""
    plans: list[UploadPlan] = []
    first = min(MULTI_FILE_UPLOAD, files)
    if first:
        tones = tuple(
            write_tone(folder / f"take-{i + 1}.wav", seconds=0.6 + 0.2 * i, frequency=220 * (i + 1))
            for i in range(first)
        )
        plans.append(UploadPlan(AUDIO_TEMPLATE, tones))
    for n in range(first, files):
        if n % 2:
            path = write_document(folder / f"notes-{n + 1}.txt", words=4_000 + 500 * n, seed=n)
            plans.append(UploadPlan(DOCUMENT_TEMPLATE, (path,)))
        else:
            path = write_tone(folder / f"clip-{n + 1}.wav", seconds=0.8, frequency=330 + 10 * n)
            plans.append(UploadPlan(AUDIO_TEMPLATE, (path,)))
    return plans


@attrs.frozen
class UploadOutcome:
    """How one upload ended, as the client saw it and as its status record says."""

    upload_id: str
    template_id: str
    files: int
    state: str
    outputs: tuple[dict[str, Any], ...]
    error: str | None


@attrs.frozen
class DemoReport:
    """The demo's summary."""

    uploads: tuple[UploadOutcome, ...]
    dead_lettered: int
    sqs_requests: int
    s3_requests: int
    seconds: float
    sqs_idle_polls: int = 0
    """ReceiveMessage calls that came back empty: their number follows wall time (three
    pollers waiting), not the work, so the per-upload figure leaves them out."""

    @property
    def completed(self) -> int:
        return sum(1 for u in self.uploads if u.state == "completed")

    @property
    def ok(self) -> bool:
        """Every upload completed."""
        return self.completed == len(self.uploads)

    def to_dict(self) -> dict[str, Any]:
        count = len(self.uploads) or 1
        return {
            "uploads": len(self.uploads),
            "completed": self.completed,
            "failed": len(self.uploads) - self.completed,
            "deadLettered": self.dead_lettered,
            "outputs": sum(len(u.outputs) for u in self.uploads),
            "outputBytes": sum(o["bytes"] for u in self.uploads for o in u.outputs),
            "requests": {
                "sqs": self.sqs_requests,
                "s3": self.s3_requests,
                "sqsIdlePolls": self.sqs_idle_polls,
                "sqsPerUpload": round((self.sqs_requests - self.sqs_idle_polls) / count, 2),
                "s3PerUpload": round(self.s3_requests / count, 2),
            },
            "seconds": round(self.seconds, 2),
            "details": [
                {
                    "uploadId": u.upload_id,
                    "templateId": u.template_id,
                    "files": u.files,
                    "state": u.state,
                    "error": u.error,
                    "outputs": [{"name": o["name"], "bytes": o["bytes"]} for o in u.outputs],
                }
                for u in self.uploads
            ],
        }


@attrs.define
class _Board:
    """Progress bars, one line per upload: redrawn in place on a terminal, printed as
    lines of change elsewhere."""

    out: TextIO
    enabled: bool
    tty: bool
    rows: dict[str, tuple[str, UploadStatus]] = attrs.field(factory=dict)
    _printed: int = 0
    _last: dict[str, str] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def update(self, upload_id: str, label: str, status: UploadStatus) -> None:
        with self._lock:
            self.rows[upload_id] = (label, status)
            if not self.enabled:
                return
            if self.tty:
                self._redraw()
            else:
                line = _line(label, status)
                summary = f"{status.state.value} {int(status.percent or 0)}"
                if self._last.get(upload_id) != summary:
                    self._last[upload_id] = summary
                    print(line, file=self.out, flush=True)

    def _redraw(self) -> None:
        if self._printed:
            self.out.write(f"\x1b[{self._printed}F")
        # A line wider than the terminal wraps and the redraw climbs too few lines: cut to
        # the width here; the summary and a log (no terminal) get the whole reason.
        width = shutil.get_terminal_size().columns - 1
        for label, status in self.rows.values():
            self.out.write("\x1b[2K" + _line(label, status, width) + "\n")
        self._printed = len(self.rows)
        self.out.flush()


def _updater(board: _Board, upload_id: str, label: str) -> Callable[[UploadStatus], None]:
    def update(status: UploadStatus) -> None:
        board.update(upload_id, label, status)

    return update


def _line(label: str, status: UploadStatus, width: int | None = None) -> str:
    """One upload's bar and state, with the whole failure reason unless ``width`` cuts it."""
    percent = 100.0 if status.state is UploadState.COMPLETED else float(status.percent or 0)
    filled = int(_BAR * percent / 100)
    bar = "█" * filled + "·" * (_BAR - filled)
    note = status.state.value
    if status.state in (UploadState.ERROR, UploadState.RETRYING) and status.error:
        note += f": {status.error}"
    line = f"{label:<34} {bar} {percent:5.1f}%  {note}"
    if width is not None and len(line) > width:
        line = line[: max(width - 1, 0)] + "…"
    return line


def run_demo(
    *,
    files: int = 6,
    fail_rate: float = 0.0,
    out: TextIO | None = None,
    quiet: bool = False,
    timeout: float = 120.0,
    settings: DemoSettings | None = None,
) -> DemoReport:
    """Run the demo end to end and return its report (``quiet`` draws no progress)."""
    out = out or sys.stdout
    settings = attrs.evolve(settings or DemoSettings(), fail_rate=fail_rate)
    started = time.monotonic()
    board = _Board(out, enabled=not quiet, tty=out.isatty())
    with (
        tempfile.TemporaryDirectory(prefix="transflow-demo-") as folder,
        DemoStack(settings) as stack,
    ):
        plans = plan_uploads(Path(folder), files)
        # The uploads' cost, not the provisioning's nor the demo's own look at the queues.
        stack.requests.reset()
        if not quiet:
            print(
                f"transflow demo: {len(plans)} uploads of {files} files on {stack.endpoint_url}; "
                f"page and SSE on {stack.http_url} while the demo runs (transflow dev keeps "
                "them up)",
                file=out,
                flush=True,
            )
        followers = _start_uploads(stack, settings, plans, board)

        deadline = time.monotonic() + timeout
        for _, _, follower in followers:
            follower.wait(max(0.0, deadline - time.monotonic()))
            follower.stop()
        sqs_requests = stack.requests.total("sqs")
        s3_requests = stack.requests.total("s3")
        idle_polls = stack.requests.empty_receives
        failed = sum(1 for *_, f in followers if f.status.state is not UploadState.COMPLETED)
        # A job that failed for the last time reaches the DLQ on the queue's next receive.
        while stack.dead_lettered() < failed and time.monotonic() < deadline:
            time.sleep(0.2)
        return DemoReport(
            _outcomes(stack, followers),
            stack.dead_lettered(),
            sqs_requests,
            s3_requests,
            time.monotonic() - started,
            idle_polls,
        )


_Followed = tuple[str, UploadPlan, UploadFollower]


def _start_uploads(
    stack: DemoStack, settings: DemoSettings, plans: list[UploadPlan], board: _Board
) -> list[_Followed]:
    """Ask the demo's endpoint for a ticket per upload, follow its progress stream, then
    post its files: the follower is on before the first file lands, so no event is missed."""
    followers: list[_Followed] = []
    for plan in plans:
        ticket = post_json(
            f"{stack.http_url}/api/uploads",
            {
                "templateId": plan.template_id,
                "files": [{"name": p.name, "size": p.stat().st_size} for p in plan.files],
            },
        )
        upload_id = ticket["uploadId"]
        label = f"{plan.template_id} x{len(plan.files)} {upload_id[:8]}"
        follower = UploadFollower(
            f"{stack.http_url}/events",
            upload_channel(settings.branch, upload_id),
            on_change=_updater(board, upload_id, label),
            token=ticket.get("streamToken"),
        ).start()
        board.update(upload_id, label, follower.status)
        for presigned, path in zip(ticket["files"], plan.files, strict=True):
            post_file(presigned["url"], presigned["fields"], path)
        followers.append((upload_id, plan, follower))
    return followers


def _outcomes(stack: DemoStack, followers: list[_Followed]) -> tuple[UploadOutcome, ...]:
    """Each upload as its stream last showed it, with the outputs its status record lists."""
    outcomes = []
    for upload_id, plan, follower in followers:
        record = stack.upload_report(upload_id)
        state = follower.status.state.value if follower.finished else "unfinished"
        outcomes.append(
            UploadOutcome(
                upload_id,
                plan.template_id,
                len(plan.files),
                state,
                tuple(record["outputs"]),
                follower.status.error if state != "completed" else None,
            )
        )
    return tuple(outcomes)


def print_summary(report: DemoReport, out: TextIO) -> None:
    """The human summary."""
    data = report.to_dict()
    print("", file=out)
    print(
        f"{data['completed']} of {data['uploads']} uploads completed, "
        f"{data['failed']} failed, {data['deadLettered']} dead-lettered "
        f"({data['seconds']:.1f}s)",
        file=out,
    )
    for upload in report.uploads:
        size = sum(o["bytes"] for o in upload.outputs)
        print(
            f"  {upload.upload_id}  {upload.template_id:<17} {upload.files} file(s) → "
            f"{len(upload.outputs)} output(s), {size / 1024:.1f} KiB  {upload.state}"
            + (f" ({upload.error})" if upload.error else ""),
            file=out,
        )
        for output in upload.outputs:
            print(f"      {output['key']}  {output['bytes']} bytes", file=out)
    requests = data["requests"]
    idle = requests["sqsIdlePolls"]
    print(
        f"SQS requests: {requests['sqsPerUpload']} per upload ({requests['sqs'] - idle} in all; "
        f"{idle} idle long polls left out: empty receives follow wall time, not the work)",
        file=out,
    )
    print(
        "  (varies from run to run: each batch call carries the messages waiting at that "
        "moment, so how many calls it takes follows timing)",
        file=out,
    )
    print(f"S3 requests: {requests['s3PerUpload']} per upload ({requests['s3']} in all)", file=out)
    print(
        "The demo's page and SSE server, and its embedded endpoint, stopped with it: "
        "'transflow dev' keeps them running.",
        file=out,
    )
