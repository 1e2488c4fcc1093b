"""Request cost per completed upload: transflow next to the theoretical minimum and to the
spec's code snippets taken literally.

Every stage runs at once, as in production, against the embedded moto server:
``create_upload`` tickets → the browser's upload → S3 notifications (one record per event:
S3 invoking the bridge directly, the spec's wiring) → ``GroupingBridge`` → processing queue →
the event source mapping's loop with ``JobProcessor.handle`` (a one-step template that hashes
each input and writes a manifest) → ``ProgressPublisher`` → progress queue → one progress hub
per process → one subscriber per upload, which must see ``done``.

Spec-literal baseline: the same uploads, the same template work and the same events, but one
``SendMessage`` per job and per progress event with a random deduplication id, and every
SSE client polling the progress queue itself (``ReceiveMessage`` of 10, forwarding what is on
its channel). Charitable to the baseline: a client deletes its own events (the snippet never
deletes, so its queue never drains), receives with ``VisibilityTimeout=0`` (the snippet's 30 s
would hide other clients' events from them), and polls only once its wave of uploads has been
processed (no empty polls). Its clients are connected in waves of ``--wave`` uploads; its
receive cost grows with that number, which is the point: SQS does not fan out.

Theoretical minimum: every SQS call carries ten messages (send, receive, delete, for jobs and
for events); S3: the browser's upload, one HeadObject (the notification carries no metadata)
and one GetObject per file, one PutObject per output.

Client-count axis (``--clients 1,10,50``): transflow alone with that many SSE clients
connected at once (one subscriber per upload in flight), each size a fresh process and
endpoint, in shuffled order round after round (``--rounds``), so a slow moment of the
loaded machine spreads over every size; ``--against CHECKOUT`` runs another checkout's
transflow (say, main's) through the same code in the same rounds. Reported: medians of SQS
requests per completed upload (empty receives left out, as above) by stage, and the
bridge's S3 requests per file.

Run: ``python -m bench.cost [--uploads N] [--files F] [--wave W]``, or
``python -m bench.cost --clients 1,10,50 [--rounds R] [--against ../main]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    ROOT,
    BenchCounter,
    Endpoint,
    by_operation,
    markdown_table,
    serve,
    wait_for,
    write_result,
)
from bench.pipeline import (
    BRANCH,
    HUB_WAIT,
    OUTPUTS,
    UPLOADS,
    EventSourceLoop,
    chunks,
    created_event,
    make_buckets,
    make_queues,
    processor_packing,
    put_ticket_file,
    register_checksum,
    ticket,
)
from transflow import (
    GroupingBridge,
    JobProcessor,
    ProcessingJob,
    ProgressEvent,
    ProgressHub,
    ProgressQueue,
    ProgressType,
    TemplateRegistry,
    UploadTicket,
    upload_channel,
)
from transflow._aws.metering import RequestCounter
from transflow._wire.keys import job_output_prefix
from transflow.processing.storage import read_status_record as load_status

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

STAGES = ("browser", "bridge", "event source", "processor", "progress readers")
TERMINAL = {ProgressType.DONE, ProgressType.ERROR}


def _body(upload: int, index: int) -> bytes:
    return f"upload {upload} file {index}\n".encode() * 64


def _counters() -> dict[str, BenchCounter]:
    return {stage: BenchCounter() for stage in STAGES}


def _per_upload(counters: Mapping[str, BenchCounter], uploads: int) -> dict[str, Any]:
    # Empty receives (idle long polls) are left out: their number follows wall time, which
    # here is moto's speed, not the work; they are reported on their own.
    return {
        stage: {
            "sqs": round(c.busy_total("sqs") / uploads, 3),
            "empty_receives": c.empty_receives,
            "s3": round(c.total("s3") / uploads, 3),
            "sqs_calls": by_operation(c, "sqs"),
            "s3_calls": by_operation(c, "s3"),
        }
        for stage, c in counters.items()
    }


def _put_and_notify(s3: S3Client, handle: Any, upload: UploadTicket, n: int) -> None:
    """The browser uploads each file; S3 invokes the bridge once per file."""
    for index in range(len(upload.files)):
        sequencer = put_ticket_file(s3, upload, index, _body(n, index))
        handle(created_event(upload, [index], [sequencer]))


def _completed(ep: Endpoint, tickets: list[UploadTicket]) -> int:
    """How many uploads have a completed status record (read with an uncounted client)."""
    checker = ep.s3(RequestCounter())
    completed = 0
    for t in tickets:
        status = load_status(checker, OUTPUTS, f"outputs/{BRANCH}/{t.upload_id}/status.json")
        completed += bool(status and status.completed)
    return completed


# -- transflow ----------------------------------------------------------------------------


def run_transflow(
    ep: Endpoint,
    uploads: int,
    files: int,
    threads: int,
    window: int,
    *,
    hub_wait: int = HUB_WAIT,
    pack_events: bool = False,
) -> dict[str, Any]:
    ep.reset()
    queues = make_queues(ep.sqs(RequestCounter()), prefix="cost")
    make_buckets(ep.s3(RequestCounter()))
    c = _counters()
    signer = ep.s3(c["browser"], signature_version="s3v4")
    registry = TemplateRegistry()
    register_checksum(registry)
    processor = JobProcessor(
        registry,
        s3_client=ep.s3(c["processor"]),
        upload_bucket=UPLOADS,
        sqs_client=ep.sqs(c["processor"]),
        progress=ProgressQueue(queues.progress),
        **processor_packing(pack_events),
    )
    bridge = GroupingBridge(
        ep.sqs(c["bridge"]), ep.s3(c["bridge"]), queue_url=queues.processing, upload_bucket=UPLOADS
    )
    hub = ProgressHub(
        ep.sqs(c["progress readers"]), ProgressQueue(queues.progress), wait_time_seconds=hub_wait
    ).start()
    esm = EventSourceLoop(
        ep.sqs(c["event source"]), queues.processing, processor, threads=threads
    ).start()
    tickets = [
        ticket(signer, "checksum", [f"take-{i}.wav" for i in range(files)]) for _ in range(uploads)
    ]
    subs = {t.upload_id: hub.subscribe(upload_channel(BRANCH, t.upload_id)) for t in tickets}
    seen: dict[str, list[str]] = {t.upload_id: [] for t in tickets}
    finished: set[str] = set()
    slots = threading.Semaphore(window)
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            idle = True
            for upload_id, sub in list(subs.items()):
                while (event := sub.get(timeout=0)) is not None:
                    idle = False
                    seen[upload_id].append(event.type.value)
                    if event.type in TERMINAL:
                        finished.add(upload_id)
                        del subs[upload_id]
                        sub.close()
                        slots.release()
                        break
            if idle:
                time.sleep(0.01)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    wall0 = time.perf_counter()

    def one(item: tuple[int, UploadTicket]) -> None:
        slots.acquire()  # keep the queues shallow: at most `window` uploads in flight
        _put_and_notify(signer, bridge.handle, item[1], item[0])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, enumerate(tickets)))
    wait_for(lambda: len(finished) == uploads, 600, "every subscriber to see done")
    wall = time.perf_counter() - wall0
    stop.set()
    collector.join()
    esm.stop()
    hub.stop()
    completed = _completed(ep, tickets)
    events = sum(len(v) for v in seen.values())
    return {
        "uploads": uploads,
        "pack_events": bool(processor_packing(pack_events).get("pack_events")),
        "completed": completed,
        "saw_done": len(finished),
        "events": events,
        "event_types": seen[tickets[0].upload_id],
        "seconds": round(wall, 2),
        "per_upload": _per_upload(c, uploads),
    }


# -- the spec, literally ------------------------------------------------------------------


def _send_literal(sqs: SQSClient, url: str, body: str, group: str) -> None:
    # The spec's snippet: one SendMessage, a random deduplication id.
    sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=str(uuid.uuid4()),
    )


class LiteralBridge:
    """The spec's bridge Lambda: a job per event, ``sqs.sendMessage(processingQueue, job)``."""

    def __init__(self, sqs: SQSClient, s3: S3Client, queue_url: str) -> None:
        self.sqs, self.s3, self.queue_url = sqs, s3, queue_url

    def handle(self, event: Mapping[str, Any]) -> None:
        objects, meta = [], {}
        for record in event["Records"]:
            key = record["s3"]["object"]["key"]
            meta = self.s3.head_object(Bucket=UPLOADS, Key=key)["Metadata"]
            objects.append({"bucket": UPLOADS, "key": key})
        job = {
            "uploadId": meta["uploadid"],
            "templateId": meta["templateid"],
            "objects": objects,
            "branch": BRANCH,
        }
        _send_literal(self.sqs, self.queue_url, json.dumps(job), meta["uploadid"])


class LiteralProcessor:
    """The spec's processing Lambda: the same work and events, each event its own
    SendMessage (``publishProgress``)."""

    def __init__(self, sqs: SQSClient, s3: S3Client, progress_url: str) -> None:
        self.sqs, self.s3, self.progress_url = sqs, s3, progress_url

    def publish(self, job: ProcessingJob, kind: ProgressType, **fields: Any) -> None:
        event = ProgressEvent.create(kind, upload_id=job.upload_id, branch=job.branch, **fields)
        _send_literal(self.sqs, self.progress_url, event.to_json(), job.upload_id)

    def handle(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        for record in event["Records"]:
            job = ProcessingJob.from_json(record["body"])
            self.publish(job, ProgressType.START, key=job.objects[0].key)
            self.publish(job, ProgressType.STEP_START, step="checksum")
            digests = {}
            for n, ref in enumerate(job.objects):
                data = self.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
                digests[ref.key] = hashlib.sha256(data).hexdigest()
                self.publish(
                    job,
                    ProgressType.PROGRESS,
                    step="checksum",
                    percent=100 * (n + 1) / len(job.objects),
                )
            key = job_output_prefix(job) + "manifest.json"
            self.s3.put_object(Bucket=OUTPUTS, Key=key, Body=json.dumps(digests).encode())
            self.publish(job, ProgressType.OUTPUT, step="checksum", name="manifest.json", key=key)
            self.publish(job, ProgressType.STEP_DONE, step="checksum")
            self.publish(job, ProgressType.DONE)
        return {"batchItemFailures": []}


def _clients_poll(sqs: SQSClient, url: str, upload_ids: list[str]) -> int:
    """Each connected client polls the progress queue itself until it has seen done;
    returns the events they forwarded."""
    active = {u: upload_channel(BRANCH, u) for u in upload_ids}
    forwarded = 0
    rounds = 0
    while active:
        rounds += 1
        if rounds > 100_000:
            raise RuntimeError("the literal clients made no progress")
        for upload_id, channel in list(active.items()):
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=10, VisibilityTimeout=0
            ).get("Messages", [])
            mine = [m for m in messages if json.loads(m["Body"])["channel"] == channel]
            if not mine:
                continue
            forwarded += len(mine)
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(mine)
                ],
            )
            if any(json.loads(m["Body"])["type"] in ("done", "error") for m in mine):
                del active[upload_id]
    return forwarded


def _reached(esm: EventSourceLoop, target: int) -> bool:
    return esm.handled >= target


def run_baseline(ep: Endpoint, uploads: int, files: int, threads: int, wave: int) -> dict[str, Any]:
    ep.reset()
    queues = make_queues(ep.sqs(RequestCounter()), prefix="spec")
    make_buckets(ep.s3(RequestCounter()))
    c = _counters()
    signer = ep.s3(c["browser"], signature_version="s3v4")
    bridge = LiteralBridge(ep.sqs(c["bridge"]), ep.s3(c["bridge"]), queues.processing)
    processor = LiteralProcessor(ep.sqs(c["processor"]), ep.s3(c["processor"]), queues.progress)
    esm = EventSourceLoop(
        ep.sqs(c["event source"]), queues.processing, processor, threads=threads
    ).start()
    readers = ep.sqs(c["progress readers"])
    tickets = [
        ticket(signer, "checksum", [f"take-{i}.wav" for i in range(files)]) for _ in range(uploads)
    ]
    wall0 = time.perf_counter()
    forwarded = 0
    for batch in chunks(list(enumerate(tickets)), wave):
        target = esm.handled + len(batch)
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda item: _put_and_notify(signer, bridge.handle, item[1], item[0]), batch
                )
            )
        wait_for(partial(_reached, esm, target), 600, "the wave's jobs")
        forwarded += _clients_poll(readers, queues.progress, [t.upload_id for _, t in batch])
    wall = time.perf_counter() - wall0
    esm.stop()
    return {
        "uploads": uploads,
        "events": forwarded,
        "seconds": round(wall, 2),
        "wave": wave,
        "per_upload": _per_upload(c, uploads),
    }


def _empties(result: Mapping[str, Any]) -> int:
    return sum(int(stage["empty_receives"]) for stage in result["per_upload"].values())


# -- the minimum --------------------------------------------------------------------------


def minimum(uploads: int, files: int, events: int) -> dict[str, dict[str, float]]:
    """Per upload: every SQS call full (ten messages), S3 only what the work needs."""
    jobs_calls = 3 * math.ceil(uploads / 10)  # send, receive, delete
    event_calls = math.ceil(events / 10)
    return {
        "browser": {"sqs": 0.0, "s3": float(files)},
        "bridge": {"sqs": math.ceil(uploads / 10) / uploads, "s3": float(files)},
        "event source": {"sqs": (jobs_calls - math.ceil(uploads / 10)) / uploads, "s3": 0.0},
        "processor": {"sqs": event_calls / uploads, "s3": files + 1.0},
        "progress readers": {"sqs": 2 * event_calls / uploads, "s3": 0.0},
    }


def run(
    ep: Endpoint,
    *,
    uploads: int = 300,
    files: int = 1,
    threads: int = 4,
    window: int = 40,
    wave: int = 20,
    baseline_uploads: int | None = None,
    hub_wait: int = HUB_WAIT,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    ours = run_transflow(ep, uploads, files, threads, window, hub_wait=hub_wait)
    base_n = baseline_uploads or min(uploads, 100)
    base = run_baseline(ep, base_n, files, threads, wave)
    events_per_upload = ours["events"] / uploads
    least = minimum(uploads, files, ours["events"])
    rows = []
    totals = {"transflow": [0.0, 0.0], "spec": [0.0, 0.0], "min": [0.0, 0.0]}
    for stage in STAGES:
        t, b, m = ours["per_upload"][stage], base["per_upload"][stage], least[stage]
        rows.append(
            [stage, t["sqs"], b["sqs"], round(m["sqs"], 3), t["s3"], b["s3"], round(m["s3"], 3)]
        )
        for key, src in (("transflow", t), ("spec", b), ("min", m)):
            totals[key][0] += src["sqs"]
            totals[key][1] += src["s3"]
    rows.append(
        [
            "**total**",
            *[round(totals[k][0], 3) for k in ("transflow", "spec", "min")],
            *[round(totals[k][1], 3) for k in ("transflow", "spec", "min")],
        ]
    )
    sqs_vs_min = totals["transflow"][0] / totals["min"][0]
    sqs_vs_spec = totals["transflow"][0] / totals["spec"][0]
    s3_vs_min = totals["transflow"][1] / totals["min"][1]
    s3_vs_spec = totals["transflow"][1] / totals["spec"][1]
    table = markdown_table(
        [
            "requests per upload",
            "SQS transflow",
            "SQS spec-literal",
            "SQS minimum",
            "S3 transflow",
            "S3 spec-literal",
            "S3 minimum",
        ],
        rows,
    )
    table += (
        f"\n\n| ratio | SQS | S3 |\n| --- | --- | --- |\n"
        f"| transflow / minimum | {sqs_vs_min:.2f} | {s3_vs_min:.2f} |\n"
        f"| transflow / spec-literal | {sqs_vs_spec:.2f} | {s3_vs_spec:.2f} |\n"
        f"\n{uploads:,} uploads of {files} file(s) through transflow ({ours['completed']:,} "
        f"completed, {ours['saw_done']:,} subscribers saw done, {events_per_upload:.1f} events "
        f"per upload, {ours['seconds']} s); {base_n:,} through the "
        f"spec-literal baseline with {wave} clients connected at a time ({base['seconds']} s). "
        "SQS counts leave out empty receives (idle long polls, which follow wall time: "
        f"{_empties(ours)} for transflow, {_empties(base)} for the baseline, in all)."
    )
    data = {
        "sizes": {
            "uploads": uploads,
            "files_per_upload": files,
            "threads": threads,
            "window": window,
            "baseline_uploads": base_n,
            "baseline_wave": wave,
        },
        "transflow": ours,
        "spec_literal": base,
        "minimum": least,
        "ratios": {
            "sqs_transflow_to_minimum": round(sqs_vs_min, 3),
            "sqs_transflow_to_spec": round(sqs_vs_spec, 3),
            "s3_transflow_to_minimum": round(s3_vs_min, 3),
            "s3_transflow_to_spec": round(s3_vs_spec, 3),
        },
    }
    write_result("cost", "Requests per completed upload", table, data, out, quiet=quiet)
    return data


# -- the client-count axis, interleaved ------------------------------------------------------


def one_size(
    clients: int, uploads: int, files: int, threads: int, *, pack_events: bool = False
) -> dict[str, Any]:
    """One measurement in this process: ``uploads`` uploads with ``clients`` SSE clients
    connected at once; SQS per upload by stage and the bridge's S3 per file."""
    with serve() as ep:
        ours = run_transflow(ep, uploads, files, threads, window=clients, pack_events=pack_events)
    stages = ours["per_upload"]
    return {
        "clients": clients,
        "uploads": uploads,
        "pack_events": ours["pack_events"],
        "completed": ours["completed"],
        "saw_done": ours["saw_done"],
        "events_per_upload": round(ours["events"] / uploads, 2),
        "sqs_per_upload": round(sum(stages[s]["sqs"] for s in STAGES), 3),
        "sqs_by_stage": {s: stages[s]["sqs"] for s in STAGES},
        "sqs_calls": {s: stages[s]["sqs_calls"] for s in STAGES},
        "bridge_s3_per_file": round(stages["bridge"]["s3"] / files, 3),
        "empty_receives": _empties(ours),
        "seconds": ours["seconds"],
    }


def _tree_env(checkout: Path | None) -> dict[str, str]:
    """The child's environment: ``checkout``'s transflow (default: this one) under this
    repository's bench."""
    paths = [str(ROOT)] if checkout is None else [str(checkout.resolve() / "src"), str(ROOT)]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))


def _measure_in_child(
    env: dict[str, str],
    clients: int,
    uploads: int,
    files: int,
    threads: int,
    *,
    pack_events: bool = False,
) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "bench.cost",
            "--one",
            str(clients),
            f"--uploads={uploads}",
            f"--files={files}",
            f"--threads={threads}",
            *(["--pack-events"] if pack_events else []),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_clients(
    *,
    clients: tuple[int, ...] = (1, 10, 50),
    rounds: int = 2,
    uploads: int = 40,
    files: int = 1,
    threads: int = 4,
    against: Path | None = None,
    pack_events: bool = False,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Every client count (and tree), ``rounds`` times, interleaved; writes
    cost_clients.{md,json} (cost_clients_packed.{md,json} with ``pack_events``). Each run
    has at least twice as many uploads as clients."""
    trees = {"this": _tree_env(None)}
    if against is not None:
        trees["against"] = _tree_env(against)
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {(c, t): [] for c in clients for t in trees}
    order = list(runs)
    rng = random.Random(22)  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        rng.shuffle(order)
        for size, tree in order:
            n = max(uploads, 2 * size)
            runs[size, tree].append(
                _measure_in_child(trees[tree], size, n, files, threads, pack_events=pack_events)
            )

    def median(size: int, tree: str, pick: Any) -> float:
        return round(float(statistics.median(pick(r) for r in runs[size, tree])), 3)

    rows = []
    for size in clients:
        row: list[Any] = [size]
        if against is not None:
            row.append(median(size, "against", lambda r: r["sqs_per_upload"]))
        row.append(median(size, "this", lambda r: r["sqs_per_upload"]))
        row += [median(size, "this", lambda r, s=s: r["sqs_by_stage"][s]) for s in STAGES[1:]]
        if against is not None:
            row.append(median(size, "against", lambda r: r["bridge_s3_per_file"]))
        row.append(median(size, "this", lambda r: r["bridge_s3_per_file"]))
        rows.append(row)
    headers = ["SSE clients"]
    if against is not None:
        headers.append(f"SQS / upload, {against.name}")
    headers += ["SQS / upload", *(f"{s}" for s in STAGES[1:])]
    if against is not None:
        headers.append(f"bridge S3 / file, {against.name}")
    headers.append("bridge S3 / file")
    table = markdown_table(headers, rows)
    table += (
        f"\n\nMedians of {rounds} interleaved rounds (shuffled order, a fresh process and moto "
        f"server per run); at least {uploads} uploads of {files} file(s) per run, twice the "
        "client count when that is more. Stage columns are this tree's SQS requests per "
        "completed upload; empty receives are left out."
    )
    if pack_events:
        table += (
            " Progress events packed, one message per upload per send "
            "(`JobProcessor(pack_events=True)`) where the tree has the option."
        )
    data = {
        "clients": list(clients),
        "rounds": rounds,
        "uploads": uploads,
        "files_per_upload": files,
        "against": None if against is None else str(against),
        "pack_events": pack_events,
        "runs": {f"{tree}:{size}": runs[size, tree] for size, tree in runs},
    }
    write_result(
        "cost_clients_packed" if pack_events else "cost_clients",
        "SQS requests per upload by SSE clients" + (", events packed" if pack_events else ""),
        table,
        data,
        out,
        quiet=quiet,
    )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--uploads", type=int, default=300, help="uploads (default 300; the issue's size: 1000)"
    )
    parser.add_argument("--files", type=int, default=1, help="files per upload (default 1)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent invocations (default 4)")
    parser.add_argument(
        "--window", type=int, default=40, help="uploads in flight at once (default 40)"
    )
    parser.add_argument(
        "--wave", type=int, default=20, help="baseline clients connected at once (default 20)"
    )
    parser.add_argument(
        "--baseline-uploads",
        type=int,
        default=None,
        help="baseline uploads (default: --uploads, at most 100)",
    )
    parser.add_argument(
        "--clients",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=None,
        help="the client-count axis, e.g. 1,10,50 (interleaved runs, transflow only)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the client axis")
    parser.add_argument(
        "--against", type=Path, metavar="CHECKOUT", help="another checkout, same rounds"
    )
    parser.add_argument(
        "--pack-events",
        action="store_true",
        help="the processor packs an upload's events per send into one message",
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:  # one size, in a child of run_clients
        print(
            json.dumps(
                one_size(
                    args.one, args.uploads, args.files, args.threads, pack_events=args.pack_events
                )
            )
        )
        return 0
    if args.clients is not None:
        run_clients(
            clients=args.clients,
            rounds=args.rounds,
            uploads=min(args.uploads, 300),
            files=args.files,
            threads=args.threads,
            against=args.against,
            pack_events=args.pack_events,
        )
        return 0
    with serve() as ep:
        run(
            ep,
            uploads=args.uploads,
            files=args.files,
            threads=args.threads,
            window=args.window,
            wave=args.wave,
            baseline_uploads=args.baseline_uploads,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
