"""Throughput: jobs per second through the grouping bridge and the job processor (a no-op
template), next to a raw boto3 loop that makes only the unavoidable calls against the same
endpoint in the same run: the ceiling.

transflow: S3 notifications (``--records`` per event) → ``GroupingBridge.handle`` (HeadObject,
ListObjectsV2, SendMessageBatch) → processing queue → the event source mapping's loop
(ReceiveMessage → ``JobProcessor.handle`` → DeleteMessageBatch) → progress events
(``ProgressPublisher``) → a drain of the progress queue.

Ceiling: HeadObject per file, SendMessageBatch of ten jobs, ReceiveMessage of ten,
SendMessageBatch of their ten ``done`` events, DeleteMessageBatch; the same drain. No status
record, no input download, no listing: what no pipeline can do without.

Run: ``python -m bench.throughput [--jobs N]``.

``--backlog N`` feeds each pipeline no faster than it drains: a bridge invocation (a group of
ten jobs for the ceiling) starts only while fewer than N jobs are queued and unfinished. moto
scans every message of a queue for each one it sends or receives (``Queue.attributes``), so
without a bound the slower pipeline also pays for the deeper queue it leaves, which SQS does
not charge; the bound holds both pipelines to the same depth.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import Endpoint, by_operation, markdown_table, serve, wait_for, write_result
from bench.pipeline import (
    BRANCH,
    UPLOADS,
    Drain,
    EventSourceLoop,
    chunks,
    created_event,
    make_buckets,
    make_queues,
    processor_packing,
    put_ticket_file,
    register_noop,
    ticket,
)
from transflow import GroupingBridge, JobProcessor, ProgressQueue, TemplateRegistry, UploadTicket
from transflow._aws.metering import RequestCounter
from transflow._aws.poller import QueuePoller
from transflow.processing.worker import make_worker

BODY = b"x" * 1024


def _setup_uploads(ep: Endpoint, jobs: int) -> list[tuple[UploadTicket, str]]:
    s3 = ep.s3(RequestCounter(), signature_version="s3v4")
    make_buckets(s3)
    uploads = [ticket(s3, "noop", ["clip.bin"]) for _ in range(jobs)]
    with ThreadPoolExecutor(8) as pool:
        sequencers = list(pool.map(lambda u: put_ticket_file(s3, u, 0, BODY), uploads))
    return list(zip(uploads, sequencers, strict=True))


def run_transflow(
    ep: Endpoint,
    jobs: int,
    threads: int,
    records: int,
    *,
    worker: bool = False,
    concurrency: int | None = None,
    in_flight: int | None = None,
    pack_events: bool = False,
    backlog: int | None = None,
) -> dict[str, Any]:
    ep.reset()
    setup = ep.sqs(RequestCounter())
    queues = make_queues(setup, prefix="tput")
    uploads = _setup_uploads(ep, jobs)
    counter = RequestCounter()
    sqs, s3 = ep.sqs(counter), ep.s3(counter)
    registry = TemplateRegistry()
    register_noop(registry)
    processor = JobProcessor(
        registry,
        s3_client=s3,
        sqs_client=sqs,
        progress=ProgressQueue(queues.progress),
        upload_bucket=UPLOADS,
        **processor_packing(pack_events),
    )
    bridge = GroupingBridge(
        sqs, s3, queue_url=queues.processing, upload_bucket=UPLOADS, head_concurrency=records
    )
    drain = Drain(sqs, queues.progress).start()
    if worker:
        # transflow's own worker: a QueuePoller runs the jobs, ``threads`` at a time.
        poller_sqs = ep.sqs(counter, read_timeout=30)
        extra: dict[str, Any] = {"max_in_flight": in_flight} if in_flight else {}
        esm: EventSourceLoop | QueuePoller = make_worker(
            processor,
            poller_sqs,
            queues.processing,
            concurrency=concurrency or threads,
            wait_time_seconds=1,
            **extra,
        )
    else:
        esm = EventSourceLoop(sqs, queues.processing, processor, threads=threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    esm.start()
    events = [
        {"Records": [r for u, seq in group for r in created_event(u, [0], [seq])["Records"]]}
        for group in chunks(uploads, records)
    ]
    feed = _Feed(backlog, lambda: _handled(esm))

    def invoke(event: dict[str, Any]) -> Any:
        feed.admit(len(event["Records"]))
        return bridge.handle(event)

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(invoke, events))
    wait_for(lambda: _handled(esm) >= jobs, 600, f"{jobs} jobs to be processed")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    esm.stop()
    drain.stop()
    assert all(r.ok for r in results), [r.failed for r in results if not r.ok][:3]
    return _figures("transflow worker" if worker else "transflow", jobs, wall, cpu, counter)


class _Feed:
    """Admits a producer only while fewer than ``backlog`` jobs are sent and unfinished
    (None: always)."""

    def __init__(self, backlog: int | None, finished: Callable[[], int]) -> None:
        self.backlog = backlog
        self.finished = finished
        self.sent = 0
        self.lock = threading.Lock()

    def admit(self, jobs: int) -> None:
        """Return once ``jobs`` more fit (at once when they alone exceed the backlog)."""
        if self.backlog is None:
            return
        while True:
            with self.lock:
                if self.sent - self.finished() + jobs <= max(self.backlog, jobs):
                    self.sent += jobs
                    return
            time.sleep(0.002)


def _handled(loop: EventSourceLoop | QueuePoller) -> int:
    """Jobs done: handled by the event-source loop, or run and deleted by the worker."""
    if isinstance(loop, QueuePoller):
        return loop.stats().deleted
    return loop.handled


def run_ceiling(
    ep: Endpoint, jobs: int, threads: int, backlog: int | None = None
) -> dict[str, Any]:
    ep.reset()
    setup = ep.sqs(RequestCounter())
    queues = make_queues(setup, prefix="ceiling")
    uploads = _setup_uploads(ep, jobs)
    counter = RequestCounter()
    sqs, s3 = ep.sqs(counter), ep.s3(counter)
    drain = Drain(sqs, queues.progress).start()
    done = 0
    lock = threading.Lock()
    stop = threading.Event()

    feed = _Feed(backlog, lambda: done)

    def produce(group: list[tuple[UploadTicket, str]]) -> None:
        feed.admit(len(group))
        entries = []
        for n, (upload, _seq) in enumerate(group):
            key = upload.files[0].key
            meta = s3.head_object(Bucket=UPLOADS, Key=key)["Metadata"]
            entries.append(
                {
                    "Id": str(n),
                    "MessageBody": f'{{"uploadId":"{upload.upload_id}","templateId":"'
                    f'{meta["templateid"]}","objects":[{{"bucket":"{UPLOADS}","key":"{key}"}}],'
                    f'"branch":"{BRANCH}"}}',
                    "MessageGroupId": upload.upload_id,
                    "MessageDeduplicationId": upload.upload_id,
                }
            )
        response = sqs.send_message_batch(QueueUrl=queues.processing, Entries=entries)  # type: ignore[arg-type]
        assert not response.get("Failed")

    def consume() -> None:
        nonlocal done
        while not stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=queues.processing, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                continue
            sqs.send_message_batch(
                QueueUrl=queues.progress,
                Entries=[
                    {
                        "Id": str(n),
                        "MessageBody": '{"type":"done"}',
                        "MessageGroupId": m["MessageId"],
                        "MessageDeduplicationId": m["MessageId"],
                    }
                    for n, m in enumerate(messages)
                ],
            )
            sqs.delete_message_batch(
                QueueUrl=queues.processing,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
            with lock:
                done += len(messages)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(threads)]
    for consumer in consumers:
        consumer.start()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(produce, [list(g) for g in chunks(uploads, 10)]))
    wait_for(lambda: done >= jobs, 600, f"{jobs} jobs through the raw loop")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stop.set()
    for consumer in consumers:
        consumer.join()
    drain.stop()
    return _figures("raw boto3 ceiling", jobs, wall, cpu, counter)


def _figures(
    name: str, jobs: int, wall: float, cpu: float, counter: RequestCounter
) -> dict[str, Any]:
    return {
        "name": name,
        "jobs": jobs,
        "seconds": round(wall, 3),
        "jobs_per_second": round(jobs / wall, 2),
        "client_cpu_ms_per_job": round(1000 * cpu / jobs, 3),
        "sqs_per_job": round(counter.total("sqs") / jobs, 3),
        "s3_per_job": round(counter.total("s3") / jobs, 3),
        "sqs": by_operation(counter, "sqs"),
        "s3": by_operation(counter, "s3"),
    }


def run(
    ep: Endpoint,
    *,
    jobs: int = 300,
    threads: int = 4,
    records: int = 10,
    worker: bool = False,
    worker_concurrency: int | None = None,
    worker_in_flight: int | None = None,
    pack_events: bool = False,
    backlog: int | None = None,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    ours = run_transflow(ep, jobs, threads, records, pack_events=pack_events, backlog=backlog)
    theirs = (
        run_transflow(
            ep,
            jobs,
            threads,
            records,
            worker=True,
            concurrency=worker_concurrency,
            in_flight=worker_in_flight,
            pack_events=pack_events,
            backlog=backlog,
        )
        if worker
        else None
    )
    ceiling = run_ceiling(ep, jobs, threads, backlog)
    ratio = ours["jobs_per_second"] / ceiling["jobs_per_second"]
    measured = [ours] + ([theirs] if theirs else []) + [ceiling]
    rows = [
        [
            r["name"],
            r["jobs"],
            r["seconds"],
            r["jobs_per_second"],
            r["sqs_per_job"],
            r["s3_per_job"],
            r["client_cpu_ms_per_job"],
        ]
        for r in measured
    ]
    table = markdown_table(
        ["pipeline", "jobs", "seconds", "jobs/s", "SQS req/job", "S3 req/job", "client CPU ms/job"],
        rows,
    )
    table += (
        f"\n\ntransflow runs at **{ratio:.0%}** of the ceiling ({threads} bridge invocations and "
        f"{threads} event-source pollers at a time, {records} notification records per bridge "
        "invocation, no-op template, moto in its own process"
        + (f", at most {backlog} jobs queued" if backlog else "")
        + ")."
    )
    data: dict[str, Any] = {
        "sizes": {
            "jobs": jobs,
            "threads": threads,
            "records_per_event": records,
            "pack_events": bool(processor_packing(pack_events).get("pack_events")),
            "backlog": backlog,
        },
        "transflow": ours,
        "ceiling": ceiling,
        "ratio_to_ceiling": round(ratio, 3),
    }
    if theirs is not None:
        worker_ratio = theirs["jobs_per_second"] / ceiling["jobs_per_second"]
        table += (
            f" The worker (`make_worker`, concurrency {worker_concurrency or threads}, "
            f"max_in_flight {worker_in_flight or worker_concurrency or threads}) runs at "
            f"**{worker_ratio:.0%}** of it."
        )
        data["worker"] = theirs
        data["worker_ratio_to_ceiling"] = round(worker_ratio, 3)
    write_result(
        "throughput",
        "Throughput: bridge + processor vs a raw boto3 loop",
        table,
        data,
        out,
        quiet=quiet,
    )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs per pipeline (default 300)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent invocations (default 4)")
    parser.add_argument(
        "--records", type=int, default=10, help="records per bridge event (default 10)"
    )
    parser.add_argument(
        "--worker", action="store_true", help="also run the jobs through transflow's worker"
    )
    parser.add_argument(
        "--worker-concurrency", type=int, default=None, help="the worker's (default: --threads)"
    )
    parser.add_argument(
        "--worker-in-flight", type=int, default=None, help="the worker's max_in_flight"
    )
    parser.add_argument(
        "--pack-events",
        action="store_true",
        help="the processor packs each upload's events of one send into one message",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=None,
        help="at most this many jobs queued and unfinished (default: no bound)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    with serve() as ep:
        run(
            ep,
            jobs=args.jobs,
            threads=args.threads,
            records=args.records,
            worker=args.worker,
            worker_concurrency=args.worker_concurrency,
            worker_in_flight=args.worker_in_flight,
            pack_events=args.pack_events,
            backlog=args.backlog,
            out=args.out,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
