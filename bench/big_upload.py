"""The 10,000-file upload: one ``create_upload`` of ``--files`` files, the browser's
uploads, S3's notifications arriving as the files land (in events of ``--batch`` records,
as the recommended S3 → standard queue → bridge wiring delivers them), the grouping bridge
emitting one job for the whole upload (a claim check: it is far over SQS's message size),
and, with ``--process``, the processor running that job (a step hashing every file)
while a hub reads its progress.

Measured: wall time of each phase, requests by service and operation, and the bridge's
peak memory (``tracemalloc`` peak during each bridge invocation, the largest; the server
runs in its own process, so none of it is moto's).

Run: ``python -m bench.big_upload [--files N]``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    BenchCounter,
    Endpoint,
    by_operation,
    lambda_event,
    markdown_table,
    peak_rss_mib,
    serve,
    write_result,
)
from bench.pipeline import (
    BRANCH,
    HUB_WAIT,
    UPLOADS,
    Queues,
    chunks,
    created_event,
    make_buckets,
    make_queues,
    put_ticket_file,
    register_checksum,
    ticket,
)
from transflow import (
    GroupingBridge,
    JobProcessor,
    ProgressHub,
    ProgressQueue,
    TemplateRegistry,
    UploadTicket,
    upload_channel,
)
from transflow._aws.claimcheck import ClaimCheck, decode_job_message
from transflow._aws.metering import RequestCounter


def _calls(counter: BenchCounter) -> dict[str, Any]:
    return {
        "sqs": counter.total("sqs"),
        "s3": counter.total("s3"),
        "sqs_calls": by_operation(counter, "sqs"),
        "s3_calls": by_operation(counter, "s3"),
    }


def _process(
    ep: Endpoint,
    queues: Queues,
    upload: UploadTicket,
    *,
    message: list[Any],
    counter: BenchCounter,
    phases: dict[str, float],
    hub_wait: int,
) -> dict[str, Any]:
    """Run the upload's one job while a hub subscriber follows it to ``done``."""
    registry = TemplateRegistry()
    register_checksum(registry)
    processor = JobProcessor(
        registry,
        s3_client=ep.s3(counter),
        upload_bucket=UPLOADS,
        sqs_client=ep.sqs(counter),
        progress=ProgressQueue(queues.progress),
    )
    hub = ProgressHub(
        ep.sqs(counter), ProgressQueue(queues.progress), wait_time_seconds=hub_wait
    ).start()
    sub = hub.subscribe(upload_channel(BRANCH, upload.upload_id))
    t3 = time.perf_counter()
    response = processor.handle(lambda_event(message))
    phases["processor (download, hash, manifest)"] = time.perf_counter() - t3
    assert not response["batchItemFailures"], response
    events, last = 0, None
    deadline = time.monotonic() + 300
    while last not in ("done", "error") and time.monotonic() < deadline:
        event = sub.get(timeout=1)
        if event is not None:
            events += 1
            last = event.type.value
    phases["until the subscriber saw done"] = time.perf_counter() - t3
    hub.stop()
    assert last == "done", f"the subscriber saw {events} events, the last {last!r}"
    return {"processor": _calls(counter), "progress_events_seen": events}


def _ops(counter: BenchCounter) -> str:
    ops = {**by_operation(counter, "s3"), **by_operation(counter, "sqs")}
    return ", ".join(f"{k} {v:,}" for k, v in ops.items())


def run(
    ep: Endpoint,
    *,
    files: int = 10_000,
    batch: int = 100,
    threads: int = 8,
    process: bool = False,
    hub_wait: int = HUB_WAIT,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    ep.reset()
    queues = make_queues(ep.sqs(RequestCounter()), prefix="big", visibility=900)
    make_buckets(ep.s3(RequestCounter()))
    browser, bridge_count, proc_count = BenchCounter(), BenchCounter(), BenchCounter()
    signer = ep.s3(browser, signature_version="s3v4")
    bridge = GroupingBridge(
        ep.sqs(bridge_count),
        ep.s3(bridge_count),
        queue_url=queues.processing,
        upload_bucket=UPLOADS,
    )
    phases: dict[str, float] = {}

    t0 = time.perf_counter()
    upload = ticket(signer, "checksum", [f"frame-{n:05d}.bin" for n in range(files)])
    phases["create_upload (sign)"] = time.perf_counter() - t0

    uploading = bridging = 0.0
    peak_bytes = 0
    results = []
    tracemalloc.start()
    with ThreadPoolExecutor(threads) as pool:
        for group in chunks(range(files), batch):
            t1 = time.perf_counter()
            sequencers = list(
                pool.map(lambda n: put_ticket_file(signer, upload, n, b"%05d" % n * 20), group)
            )
            t2 = time.perf_counter()
            tracemalloc.reset_peak()
            results.append(bridge.handle(created_event(upload, list(group), sequencers)))
            peak_bytes = max(peak_bytes, tracemalloc.get_traced_memory()[1])
            uploading += t2 - t1
            bridging += time.perf_counter() - t2
    tracemalloc.stop()
    phases["browser uploads (PUT)"] = uploading
    phases["bridge (all invocations)"] = bridging
    failed = [f for r in results for f in r.failed]
    sent = [s for r in results for s in r.sent]
    assert not failed, failed[:3]
    assert len(sent) == 1, f"expected one job for the upload, got {len(sent)}"
    assert sent[0].object_count == files

    setup = ep.sqs(RequestCounter())
    message = setup.receive_message(
        QueueUrl=queues.processing, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert len(message) == 1
    claimed = isinstance(decode_job_message(message[0]["Body"]), ClaimCheck)
    data: dict[str, Any] = {
        "sizes": {"files": files, "notification_batch": batch, "threads": threads},
        "bridge_invocations": len(results),
        "jobs_sent": len(sent),
        "claim_check": claimed,
        "job_message_bytes": len(message[0]["Body"].encode()),
        "bridge_peak_traced_mib": round(peak_bytes / 2**20, 2),
        "browser": _calls(browser),
        "bridge": _calls(bridge_count),
    }
    if process:
        data.update(
            _process(
                ep,
                queues,
                upload,
                message=message,
                counter=proc_count,
                phases=phases,
                hub_wait=hub_wait,
            )
        )
    data["phases_seconds"] = {k: round(v, 2) for k, v in phases.items()}
    data["process_peak_rss_mib"] = round(peak_rss_mib(), 1)

    rows: list[list[Any]] = [[name, round(sec, 2)] for name, sec in phases.items()]
    table = markdown_table(["phase", "seconds"], rows)
    req_rows = [
        ["browser", browser.total("s3"), 0, _ops(browser)],
        ["bridge", bridge_count.total("s3"), bridge_count.total("sqs"), _ops(bridge_count)],
    ]
    if process:
        req_rows.append(
            ["processor + hub", proc_count.total("s3"), proc_count.total("sqs"), _ops(proc_count)]
        )
    table += "\n\n" + markdown_table(["requests", "S3", "SQS", "by operation"], req_rows)
    table += (
        f"\n\n{files:,} files, notifications in {len(results)} bridge invocations of up to "
        f"{batch} records; one job sent ({'a claim check' if claimed else 'inline'}, "
        f"{data['job_message_bytes']:,}-byte message). Bridge peak memory (tracemalloc, "
        f"largest invocation): **{data['bridge_peak_traced_mib']} MiB**; whole bench process "
        f"peak RSS {data['process_peak_rss_mib']} MiB."
    )
    write_result("big_upload", f"One upload of {files:,} files", table, data, out, quiet=quiet)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files (default 10,000)")
    parser.add_argument(
        "--batch", type=int, default=100, help="records per bridge event (default 100)"
    )
    parser.add_argument("--threads", type=int, default=8, help="upload threads (default 8)")
    parser.add_argument(
        "--process",
        action="store_true",
        help="also run the job (slow on moto: one FIFO group of thousands of progress events)",
    )
    args = parser.parse_args(argv)
    with serve() as ep:
        run(
            ep,
            files=args.files,
            batch=args.batch,
            threads=args.threads,
            process=args.process,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
