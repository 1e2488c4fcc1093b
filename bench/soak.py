"""The soak: the whole pipeline for ``--seconds`` under injected faults, then its invariants.

Uploads arrive at ``--rate`` per second (one to three files each; every ``--poison-every``-th
runs a template that always fails). A share (``--fault-rate``) of every SQS and S3 call of
the bridge, the workers and the hub fails with throttling, a 5xx or a dropped connection,
and half that share of sends, deletes, writes and receives loses its response after the
endpoint acted (:mod:`bench.chaos`). Two workers (``transflow.processing.worker.make_worker``,
heartbeats on) run the jobs. A third of the way in, one worker crashes: its jobs freeze
before writing their outputs and it stops receiving and heartbeating, so its in-flight
messages come back only when their visibility runs out; a new worker takes its place. One
job sleeps three visibility timeouts. A tenth of the subscribers disconnect after their first event.

Invariants, checked after the queues settle (exit status 1 if any fails):

1. nothing lost: every upload completed, or its job is in the DLQ;
2. nothing doubled: a completed upload has exactly one completed status record write, and
   its manifest was written by no more attempts than ran (never after completion); a
   poison upload never completes;
3. every subscriber that stayed connected saw ``done`` or ``error`` for its upload;
4. the processing queue is empty.

Run: ``python -m bench.soak [--seconds S] [--fault-rate P]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from bench.chaos import Chaos
from bench.common import Endpoint, markdown_table, serve, wait_for, write_result
from bench.pipeline import (
    BRANCH,
    OUTPUTS,
    UPLOADS,
    Queues,
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
    StepContext,
    TemplateRegistry,
    UploadTicket,
    upload_channel,
)
from transflow._aws.claimcheck import decode_job_message
from transflow._aws.metering import RequestCounter
from transflow._aws.poller import QueuePoller, backoff_visibility
from transflow._aws.retry import RetryPolicy
from transflow.processing.status import ASSEMBLY_COMPLETED, AssemblyStatus
from transflow.processing.worker import make_worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

VISIBILITY = 6
MAX_RECEIVES = 5


class WorkerDied(BaseException):
    """Ends a crashed worker's frozen threads once the soak is over. A BaseException, so
    nothing on the way out (the processor catches Exception) records anything."""


class PoisonError(RuntimeError):
    """What the poison template raises, every time."""


# -- workers ------------------------------------------------------------------------------


@attrs.define(eq=False)
class Worker:
    """A worker (the job processor behind a QueuePoller), with a way to die."""

    name: str
    poller: QueuePoller | None = None
    crashed: threading.Event = attrs.field(factory=threading.Event)
    buried: threading.Event = attrs.field(factory=threading.Event)

    def checkpoint(self) -> None:
        """Where a crash takes effect: the thread stops here for good."""
        if self.crashed.is_set():
            self.buried.wait()  # frozen, as in a dead process, until the soak is over
            raise WorkerDied(self.name)

    def crash(self) -> None:
        """Die: freeze every handler at its next checkpoint, stop receiving and
        heartbeating; nothing is deleted or released by the dead worker."""
        self.crashed.set()
        assert self.poller is not None
        self.poller.request_stop()


@attrs.define(eq=False)
class Soak:
    ep: Endpoint
    chaos: Chaos
    queues: Queues
    seconds: float
    rate: float
    poison_every: int
    seed: int
    visibility: int = VISIBILITY
    slow_upload: str | None = None
    slow_runs: int = 0
    workers: list[Worker] = attrs.field(factory=list)
    uploads: list[tuple[UploadTicket, bool]] = attrs.field(factory=list)
    subs: dict[str, Any] = attrs.field(factory=dict)
    outcome: dict[str, str] = attrs.field(factory=dict)  # upload -> "done" | "error"
    disconnected: set[str] = attrs.field(factory=set)
    leavers: set[str] = attrs.field(factory=set)  # hang up after their first event
    bridge_retries: int = 0
    lost_uploads: list[str] = attrs.field(factory=list)
    pack_events: bool = False  # the workers' processors pack progress events
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - a workload, not secrets

    # -- wiring ----------------------------------------------------------------------------

    def faulty_sqs(self) -> Any:
        return self.chaos.attach(self.ep.sqs(RequestCounter()))

    def faulty_s3(self) -> Any:
        return self.chaos.attach(self.ep.s3(RequestCounter()))

    def registry(self, worker: Worker) -> TemplateRegistry:
        registry = TemplateRegistry()
        register_checksum(registry, before_output=lambda ctx: self.before_output(ctx, worker))
        poison = registry.template("poison", output_bucket=OUTPUTS)

        @poison.step("explode")
        def explode(ctx: StepContext) -> None:
            raise PoisonError(f"upload {ctx.upload_id} is poison: this template always fails")

        return registry

    def before_output(self, ctx: StepContext, worker: Worker) -> None:
        worker.checkpoint()
        if ctx.upload_id == self.slow_upload:
            with self._lock:
                self.slow_runs += 1
            time.sleep(3 * self.visibility)  # outlives its visibility timeout; heartbeats keep it
            worker.checkpoint()  # a worker that died meanwhile does not wake up

    def start_worker(self) -> Worker:
        sqs = self.faulty_sqs()
        worker = Worker(f"worker-{len(self.workers)}")
        processor = JobProcessor(
            self.registry(worker),
            s3_client=self.faulty_s3(),
            upload_bucket=UPLOADS,
            sqs_client=sqs,
            progress=ProgressQueue(self.queues.progress),
            max_receive_count=MAX_RECEIVES,
            retry_policy=RetryPolicy(attempts=6, initial=0.05, maximum=1.0),
            pack_events=self.pack_events,
        )
        worker.poller = make_worker(
            processor,
            sqs,
            self.queues.processing,
            concurrency=4,
            visibility_timeout=self.visibility,
            wait_time_seconds=2,
            drain_timeout=1.0,
            retry_delay=backoff_visibility(1, 4),
        ).start()
        self.workers.append(worker)
        return worker

    # -- the browser, S3 and the bridge Lambda ---------------------------------------------

    def produce(self, browser: S3Client, bridge: GroupingBridge, n: int) -> None:
        poison = n % self.poison_every == self.poison_every - 1
        files = [f"part-{i}.bin" for i in range(1 + n % 3)]
        upload = ticket(browser, "poison" if poison else "checksum", files)
        if n == 5:
            self.slow_upload = upload.upload_id
        sub = self.ep_hub.subscribe(upload_channel(BRANCH, upload.upload_id))
        with self._lock:
            self.uploads.append((upload, poison))
            self.subs[upload.upload_id] = sub
            if self._rng.random() < 0.1:
                self.leavers.add(upload.upload_id)
        sequencers = [
            put_ticket_file(browser, upload, i, _body(upload.upload_id, i))
            for i in range(len(files))
        ]
        event = created_event(upload, list(range(len(files))), sequencers)
        for attempt in range(40):
            # Lambda invokes again until every record is enqueued; the queue drops duplicates.
            if bridge.handle(event).ok:
                return
            with self._lock:
                self.bridge_retries += 1
            time.sleep(min(2.0, 0.05 * 2**attempt))
        with self._lock:
            self.lost_uploads.append(upload.upload_id)

    ep_hub: Any = None

    def follow(self, stop: threading.Event) -> None:
        """The SSE clients: read each subscription; some hang up after their first event."""
        while not stop.is_set():
            idle = True
            with self._lock:
                subs = list(self.subs.items())
            for upload_id, sub in subs:
                while (event := sub.get(timeout=0)) is not None:
                    idle = False
                    if event.type.value in ("done", "error"):
                        self.outcome.setdefault(upload_id, event.type.value)
                        if event.type.value == "done" or not event.extra.get("retrying", False):
                            self.outcome[upload_id] = event.type.value
                            self._drop(upload_id, sub)
                            break
                    elif upload_id in self.leavers and upload_id not in self.outcome:
                        self.disconnected.add(upload_id)
                        self._drop(upload_id, sub)
                        break
            if idle:
                time.sleep(0.02)

    def _drop(self, upload_id: str, sub: Any) -> None:
        sub.close()
        with self._lock:
            self.subs.pop(upload_id, None)


def _body(upload_id: str, index: int) -> bytes:
    return f"{upload_id}/{index}\n".encode() * 50


# -- the invariants -----------------------------------------------------------------------


def _versions(s3: S3Client, prefix: str) -> dict[str, list[str]]:
    """Version ids of every key under ``prefix``."""
    found: dict[str, list[str]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=OUTPUTS, Prefix=prefix):
        for version in page.get("Versions", []):
            found.setdefault(version["Key"], []).append(version["VersionId"])
    return found


def _dlq_uploads(ep: Endpoint, url: str) -> set[str]:
    sqs = ep.sqs(RequestCounter())
    found: set[str] = set()
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300
        ).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            job = decode_job_message(message["Body"])
            found.add(job.upload_id)


def _check_upload(
    soak: Soak,
    s3: S3Client,
    upload: UploadTicket,
    *,
    poison: bool,
    dlq: set[str],
    counts: Counter[str],
    failures: list[str],
) -> None:
    uid = upload.upload_id
    prefix = f"outputs/{BRANCH}/{uid}/"
    versions = _versions(s3, prefix)
    records = [
        AssemblyStatus.from_json(
            s3.get_object(Bucket=OUTPUTS, Key=prefix + "status.json", VersionId=v)["Body"].read()
        )
        for v in versions.get(prefix + "status.json", [])
    ]
    completed = sum(1 for r in records if r.ok == ASSEMBLY_COMPLETED and r.error is None)
    attempts = len({r.attempt for r in records})
    manifests = len(versions.get(prefix + "manifest.json", []))
    counts["uploads"] += 1
    counts["poison uploads"] += poison
    if uid in dlq:
        counts["in the DLQ"] += 1
    if completed:
        counts["completed"] += 1
    if manifests > 1:
        counts["manifest rewritten by a retry after a failed attempt"] += 1
    if not completed and uid not in dlq:
        failures.append(f"{uid}: LOST (not completed, not in the DLQ; {len(records)} records)")
    if completed > 1:
        runs = ", ".join(f"attempt {r.attempt} {r.ok or r.error}" for r in records)
        slow = " (the slow job)" if uid == soak.slow_upload else ""
        failures.append(f"{uid}{slow}: completed {completed} times; records: {runs}")
    if poison and completed:
        failures.append(f"{uid}: a poison upload completed")
    if completed and uid in dlq:
        failures.append(f"{uid}: completed and also in the DLQ")
    if completed and not 1 <= manifests <= attempts:
        failures.append(f"{uid}: {manifests} manifest writes for {attempts} attempts")
    if completed and manifests:
        manifest = json.loads(
            s3.get_object(Bucket=OUTPUTS, Key=prefix + "manifest.json")["Body"].read()
        )
        expected = {
            f"part-{i}.bin": hashlib.sha256(_body(uid, i)).hexdigest()
            for i in range(len(upload.files))
        }
        if manifest != expected:
            failures.append(f"{uid}: the manifest does not match the inputs")
    stayed = uid not in soak.disconnected
    counts["subscribers stayed connected"] += stayed
    if stayed:
        seen = soak.outcome.get(uid)
        counts[f"subscribers saw {seen}"] += 1
        if seen not in ("done", "error"):
            failures.append(
                f"{uid}: its subscriber stayed connected and saw neither done nor error"
            )


def check(soak: Soak) -> tuple[dict[str, Any], list[str]]:
    s3 = soak.ep.s3(RequestCounter())
    dlq = _dlq_uploads(soak.ep, soak.queues.dlq)
    failures: list[str] = []
    counts: Counter[str] = Counter()
    for upload, poison in soak.uploads:
        _check_upload(soak, s3, upload, poison=poison, dlq=dlq, counts=counts, failures=failures)
    counts["subscribers disconnected early"] = len(soak.disconnected)
    attrs_now = soak.ep.sqs(RequestCounter()).get_queue_attributes(
        QueueUrl=soak.queues.processing, AttributeNames=["All"]
    )["Attributes"]
    left = int(attrs_now["ApproximateNumberOfMessages"]) + int(
        attrs_now["ApproximateNumberOfMessagesNotVisible"]
    )
    if left:
        failures.append(f"{left} message(s) still on the processing queue")
    failures.extend(f"{u}: the bridge never enqueued it" for u in soak.lost_uploads)
    return dict(counts), failures


def _settled(soak: Soak) -> bool:
    sqs = soak.ep.sqs(RequestCounter())
    got = sqs.get_queue_attributes(QueueUrl=soak.queues.processing, AttributeNames=["All"])[
        "Attributes"
    ]
    return (
        got["ApproximateNumberOfMessages"] == "0"
        and got["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def _report(data: dict[str, Any], chaos: Chaos, soak: Soak, crashed: Worker | None) -> str:
    counts, failures = data["counts"], data["invariant_failures"]
    seconds, rate, fault_rate = (
        data["sizes"]["seconds"],
        data["sizes"]["rate_per_s"],
        data["sizes"]["fault_rate"],
    )
    rows = [[k, v] for k, v in sorted(counts.items())]
    rows += [[f"fault injected: {k}", v] for k, v in sorted(chaos.counts.items())]
    rows += [
        ["bridge re-invocations after a failed record", soak.bridge_retries],
        ["runs of the job that outlived its visibility timeout", soak.slow_runs],
        ["visibility extensions (heartbeats)", data["visibility_extensions"]],
        ["duplicate progress events dropped by the hub", data["hub_duplicates_dropped"]],
    ]
    table = markdown_table(["soak", "count"], rows)
    verdict = (
        "**all invariants held**" if not failures else f"**{len(failures)} invariant failure(s)**"
    )
    table += (
        f"\n\n{verdict}. {seconds:g} s of uploads at {rate:g}/s, {fault_rate:.0%} of SQS and S3 "
        f"calls failing before sending and {fault_rate / 2:.1%} of sends, deletes, receives and "
        f"writes losing their response; {crashed.name if crashed else 'no worker'} crashed at "
        f"a third of the run and was replaced; {data['seconds_total']} s in all."
    )
    if failures:
        table += "\n\n" + "\n".join(f"- {f}" for f in failures[:50])
    return table


def run(
    ep: Endpoint,
    *,
    seconds: float = 150,
    rate: float = 3.0,
    fault_rate: float = 0.05,
    poison_every: int = 25,
    seed: int = 7,
    visibility: int = VISIBILITY,
    pack_events: bool = False,
    out: Path | None = None,
    quiet: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    ep.reset()
    queues = make_queues(
        ep.sqs(RequestCounter()),
        prefix="soak",
        visibility=visibility,
        max_receive_count=MAX_RECEIVES,
    )
    make_buckets(ep.s3(RequestCounter()), versioned_outputs=True)
    chaos = Chaos(fault_rate, seed=seed)
    soak = Soak(ep, chaos, queues, seconds, rate, poison_every, seed, visibility)
    soak.pack_events = pack_events
    # A lost ReceiveMessage response hides its events until their visibility runs out (SQS
    # returns them to a retry with the same ReceiveRequestAttemptId; moto does not), so the
    # hub's visibility is kept as short as the workers'.
    hub = ProgressHub(
        soak.faulty_sqs(),
        ProgressQueue(queues.progress),
        wait_time_seconds=2,
        visibility_timeout=visibility,
    ).start()
    soak.ep_hub = hub
    for _ in range(2):
        soak.start_worker()
    browser = ep.s3(RequestCounter(), signature_version="s3v4")  # browsers are not ours to break
    bridge = GroupingBridge(
        soak.faulty_sqs(),
        soak.faulty_s3(),
        upload_bucket=UPLOADS,
        queue_url=queues.processing,
        retry=RetryPolicy(attempts=6, initial=0.05, maximum=1.0),
    )
    stop = threading.Event()
    follower = threading.Thread(target=soak.follow, args=(stop,), daemon=True)
    follower.start()
    producers: list[threading.Thread] = []
    started = time.monotonic()
    crashed: Worker | None = None
    n = 0
    while time.monotonic() - started < seconds:
        if crashed is None and time.monotonic() - started > seconds / 3:
            crashed = soak.workers[0]
            crashed.crash()
            soak.start_worker()  # the restart
            if not quiet:
                print(
                    f"[{time.monotonic() - started:5.1f}s] {crashed.name} crashed; restarted",
                    flush=True,
                )
        thread = threading.Thread(target=soak.produce, args=(browser, bridge, n), daemon=True)
        thread.start()
        producers.append(thread)
        n += 1
        time.sleep(1 / rate)
    for thread in producers:
        thread.join()
    produced = time.monotonic() - started
    wait_for(lambda: _settled(soak), 300, "the processing queue to settle")
    # The check reports each subscriber that saw neither.
    with contextlib.suppress(TimeoutError):
        # Done, or an error: a job dead-lettered on a delivery its processor never saw (a
        # lost ReceiveMessage response) ends on an error that still says "retrying".
        wait_for(
            lambda: all(u in soak.outcome for u in list(soak.subs)),
            60,
            "every connected subscriber to see done or error",
        )
    stop.set()
    follower.join()
    chaos.enabled = False
    counts, failures = check(soak)
    polls = [w.poller.stats() for w in soak.workers if w.poller is not None]
    data: dict[str, Any] = {
        "sizes": {
            "seconds": seconds,
            "rate_per_s": rate,
            "fault_rate": fault_rate,
            "poison_every": poison_every,
            "seed": seed,
        },
        "counts": counts,
        "faults_injected": dict(chaos.counts),
        "bridge_reinvocations": soak.bridge_retries,
        "worker_crashed": crashed.name if crashed else None,
        "slow_job_runs": soak.slow_runs,
        "visibility_extensions": sum(p.extended for p in polls),
        "hub_duplicates_dropped": hub.stats().duplicates,
        "seconds_producing": round(produced, 1),
        "seconds_total": round(time.monotonic() - started, 1),
        "invariant_failures": failures,
        "ok": not failures,
    }
    for w in soak.workers:
        if w is not crashed and w.poller is not None:
            w.poller.request_stop()
    # stop(), not the poller's request_stop(): the lease keeper would go on renewing the
    # lease on a queue the caller deletes next, and log each failure.
    hub.stop(5)
    for w in soak.workers:
        w.buried.set()
    table = _report(data, chaos, soak, crashed)
    write_result(
        "soak", "Soak with faults: nothing lost, nothing doubled", table, data, out, quiet=quiet
    )
    return data, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=150, help="seconds of uploads (default 150)"
    )
    parser.add_argument("--rate", type=float, default=3.0, help="uploads per second (default 3)")
    parser.add_argument(
        "--fault-rate", type=float, default=0.05, help="share of calls failing (default 0.05)"
    )
    parser.add_argument(
        "--poison-every", type=int, default=25, help="every n-th upload always fails"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--pack-events", action="store_true", help="the processors pack progress events"
    )
    args = parser.parse_args(argv)
    with serve() as ep:
        _data, failures = run(
            ep,
            seconds=args.seconds,
            rate=args.rate,
            fault_rate=args.fault_rate,
            poison_every=args.poison_every,
            seed=args.seed,
            pack_events=args.pack_events,
        )
        code = 1 if failures else 0
        if failures:
            print(f"soak FAILED: {len(failures)} invariant(s) broken", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
