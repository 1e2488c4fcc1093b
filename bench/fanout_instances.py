"""Fan-out mode with several hub instances: progress published to the SNS FIFO topic, each
``ProgressHub`` reading its own instance queue subscribed to it.

For each count of instances (``--instances``, default 1, 2 and 4): ``--subscribers``
subscribers over ``--channels`` upload channels, spread round-robin over the instances (as
a load balancer without sticky routing would), and a publisher (a child process, so that
its threads and CPU stay out of the hubs' figures) sending every
channel's events through ``ProgressPublisher`` in fan-out mode: ``start``, ``step:start``,
``--events`` minus 3 ``progress`` events paced ``--interval`` apart, and ``done``.
Subscribers are asyncio tasks awaiting ``Subscription.aget`` (how an ASGI SSE endpoint reads
its subscription). Measured per run:

- delivered / expected, over all subscribers, and how many subscribers got every event;
- publish → subscriber latency, p50 / p99: from the moment the PublishBatch call that
  carried the event started to the moment the subscriber's task read it; and from the
  moment that call returned (moto has then written the event to every instance queue);
- the hub's own added latency, p50 / p99 / max: from the moment the hub's ReceiveMessage
  answer arrived (a botocore ``after-call`` hook) to the moment the event was in the queue
  of every matching subscriber (``dispatch`` returned), per event and instance, and the
  time ``dispatch`` itself took (the rest is the wait for a hub worker thread); and, for
  reference, to the moment the subscriber's task read it (which adds the event loop's
  wake-ups);
- SNS and SQS requests per operation (botocore event hooks,
  :class:`~transflow._aws.metering.RequestCounter`): the publisher's and the hubs'.

With ``--entry-failure-every N``, one entry per N entries of the publisher's PublishBatch
calls fails as AWS fails a transient entry (``bench.faults.EntryFailures``): the publisher
must send it again, and every subscriber must still get every event, the retried one after
its successors. A subscriber reads until it has all its channel's events (or, once its
terminal event came, a few seconds more), so a late event is counted, not cut off. Its
figures go to ``fanout_instances_entry_failures``.

moto delivers SNS → SQS FIFO inside the PublishBatch call, so publish → subscriber here
is the hub's long poll plus its dispatch; on AWS, SNS's own delivery time comes on top.

Run: ``python -m bench.fanout_instances [--subscribers N] [--channels C]
[--entry-failure-every N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchCounter,
    Endpoint,
    by_operation,
    fanout_arguments,
    markdown_table,
    publisher_child,
    quantiles_ms,
    serve,
    write_result,
)
from bench.faults import EntryFailures
from bench.pipeline import BRANCH
from transflow import (
    ProgressEvent,
    ProgressHub,
    ProgressPublisher,
    ProgressTopic,
    ProgressType,
    Subscription,
    TransflowConfig,
    upload_channel,
)
from transflow._aws.sqs_batch import BatchResult
from transflow._wire.jsontext import parse_json
from transflow.config import SqsConfig
from transflow.ops.provision import ensure_topic

TERMINAL = (ProgressType.DONE, ProgressType.ERROR)
HUB_TARGET_MS = 50.0
"""The issue's goal for the hub's own added latency, p99, at 1,000 subscribers."""
STRAGGLER_GRACE = 10.0
"""Seconds a subscriber that has its terminal event waits for events still missing (one
sent again after a failed entry arrives after its successors)."""


def upload_id(n: int) -> str:
    return f"fi-{n:05d}"


def _key(upload: str, seq: object) -> str:
    return f"{upload}:{seq}"


class _TimedPublisher(ProgressPublisher):
    """Notes when the PublishBatch call carrying each event started and returned."""

    started: dict[str, float]
    returned: dict[str, float]

    def send(self, events: list[ProgressEvent], attempt_token: str | Sequence[str]) -> BatchResult:
        began = time.time()
        result = super().send(events, attempt_token)
        ended = time.time()
        for event in events:
            self.started[_key(event.upload_id, event.seq)] = began
            self.returned[_key(event.upload_id, event.seq)] = ended
        return result


class _TimedHub(ProgressHub):
    """Notes, per event, when its ReceiveMessage answer arrived and when ``dispatch`` had
    handed it to every matching subscriber's queue."""

    received: dict[str, float]
    added: list[float]
    dispatching: list[float]

    def note_received(self, parsed: Any, **_: Any) -> None:
        now = time.time()
        for message in parsed.get("Messages", []):
            body = parse_json(message["Body"])
            if isinstance(body, dict):
                self.received[_key(str(body.get("uploadId")), body.get("seq"))] = now

    def dispatch(self, event: ProgressEvent) -> int:
        began = time.time()
        count = super().dispatch(event)
        ended = time.time()
        self.dispatching.append(ended - began)
        got = self.received.get(_key(event.upload_id, event.seq))
        if got is not None:
            self.added.append(ended - got)
        return count


def publish(
    endpoint_url: str,
    topic: str,
    channels: int,
    events: int,
    interval: float,
    *,
    entry_failure_every: int = 0,
) -> None:
    """(The child process.) Send every channel's events to the topic, failing one entry per
    ``entry_failure_every`` (0: none); print, as JSON, when each PublishBatch started and
    returned, the requests made and the failures injected."""
    counter = BenchCounter()
    sns = Endpoint(endpoint_url).sns(counter)
    failures = (
        EntryFailures(sns, "PublishBatch", entry_failure_every) if entry_failure_every else None
    )
    # One message per event: the run times each event's publish and counts entries per event.
    publisher = _TimedPublisher(ProgressTopic(topic), sns=sns, pack_events=False)
    publisher.started, publisher.returned = {}, {}
    _emit_all(publisher, channels, events, interval)
    report = {
        "started": publisher.started,
        "returned": publisher.returned,
        "sns": by_operation(counter, "sns"),
        "cpu": time.process_time(),
        "entries": failures.entries if failures else 0,
        "injected": failures.injected if failures else 0,
    }
    print(json.dumps(report), flush=True)


def _emit_all(publisher: ProgressPublisher, channels: int, events: int, interval: float) -> None:
    streams = [publisher.stream(upload_id(n), BRANCH) for n in range(channels)]

    def emit(kind: ProgressType, **fields: Any) -> None:
        for stream in streams:
            stream.emit(kind, **fields)

    emit(ProgressType.START)
    emit(ProgressType.STEP_START, step="work")
    for n in range(events - 3):
        time.sleep(interval)  # the pace of a job's progress, not a wait for a result
        emit(ProgressType.PROGRESS, step="work", percent=100 * (n + 1) / (events - 2))
    time.sleep(interval)
    emit(ProgressType.DONE)
    for stream in streams:
        stream.close()


async def _follow(
    sub: Subscription,
    hub: int,
    seen: list[tuple[str, int, float]],
    deadline: float,
    events: int,
) -> tuple[int, int]:
    """Read one subscription until it has its channel's ``events`` (or the deadline, or
    :data:`STRAGGLER_GRACE` after its terminal event); return the count of distinct events
    and of duplicates."""
    got: set[str] = set()
    duplicates = 0
    while len(got) < events and (left := deadline - time.monotonic()) > 0:
        event = await sub.aget(timeout=left)
        if event is None:
            break
        key = _key(event.upload_id, event.seq)
        if key in got:
            duplicates += 1
            continue
        got.add(key)
        seen.append((key, hub, time.time()))
        if event.type in TERMINAL:
            deadline = min(deadline, time.monotonic() + STRAGGLER_GRACE)
    return len(got), duplicates


def run_instances(
    ep: Endpoint,
    instances: int,
    *,
    subscribers: int,
    channels: int,
    events: int,
    interval: float,
    hub_wait: int,
    timeout: float,
    entry_failure_every: int = 0,
) -> dict[str, Any]:
    """One run with ``instances`` hubs; its figures."""
    ep.reset()
    config = TransflowConfig(project="fanbench", sqs=SqsConfig(progress_fanout="sns"))
    setup = BenchCounter()
    topic = ensure_topic(ep.sns(setup), config)
    hub_counter = BenchCounter()
    hubs: list[_TimedHub] = []
    for _ in range(instances):
        sqs = ep.sqs(hub_counter)
        hub = _TimedHub.from_config(
            config,
            sqs=sqs,
            sns=ep.sns(hub_counter),
            progress=ProgressTopic(topic),
            wait_time_seconds=hub_wait,
        )
        assert isinstance(hub, _TimedHub)
        hub.received, hub.added, hub.dispatching = {}, [], []
        sqs.meta.events.register("after-call.sqs.ReceiveMessage", hub.note_received)
        hub.start()
        hubs.append(hub)
    # The publisher in a child process: its threads and CPU stay out of the hubs' figures.
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "bench.fanout_instances",
            "--publish",
            ep.endpoint_url,
            topic,
            str(channels),
            str(events),
            str(interval),
            "--entry-failure-every",
            str(entry_failure_every),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    seen: list[tuple[str, int, float]] = []

    async def main() -> tuple[list[tuple[int, int]], float]:
        subs = [
            (i, hubs[i].subscribe(upload_channel(BRANCH, upload_id(n % channels))))
            for n in range(subscribers)
            for i in (n % instances,)
        ]
        deadline = time.monotonic() + timeout
        tasks = [asyncio.create_task(_follow(s, hub, seen, deadline, events)) for hub, s in subs]
        await asyncio.sleep(0)  # every task is waiting on its subscription
        wall0 = time.perf_counter()
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        counts = await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall0
        for _, sub in subs:
            sub.close()
        return list(counts), wall

    try:
        followed, wall = asyncio.run(main())
        assert child.stdout is not None
        report = json.loads(child.stdout.read().strip().splitlines()[-1])
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for hub in hubs:
            hub.stop(5)
    started: dict[str, float] = report["started"]
    returned: dict[str, float] = report["returned"]
    publish_lat = [at - started[key] for key, _, at in seen if key in started]
    returned_lat = [at - returned[key] for key, _, at in seen if key in returned]
    call_time = [returned[key] - started[key] for key in started]
    to_reader = [at - hubs[hub].received[key] for key, hub, at in seen if key in hubs[hub].received]
    added = [value for hub in hubs for value in hub.added]
    dispatching = [value for hub in hubs for value in hub.dispatching]
    per_hub = max(len(range(i, subscribers, instances)) for i in range(instances))
    counts = [distinct for distinct, _ in followed]
    delivered, expected = sum(counts), subscribers * events
    return {
        "instances": instances,
        "subscribers_per_instance": per_hub,
        "delivered": delivered,
        "expected": expected,
        "delivered_percent": round(100.0 * delivered / expected, 2) if expected else 100.0,
        "duplicates": sum(dup for _, dup in followed),
        "entries_published": report["entries"],
        "entry_failures_injected": report["injected"],
        "subscribers_complete": sum(1 for c in counts if c == events),
        "latency_ms_publish_to_subscriber": quantiles_ms(publish_lat),
        "latency_ms_publish_returned_to_subscriber": quantiles_ms(returned_lat),
        "publish_call_ms": quantiles_ms(call_time),
        "publisher_cpu_s": round(report["cpu"], 2),
        "hub_added_ms_received_to_queued": quantiles_ms(added),
        "hub_dispatch_ms": quantiles_ms(dispatching),
        "hub_ms_received_to_read": quantiles_ms(to_reader),
        "seconds": round(wall, 2),
        "publisher_sns": report["sns"],
        "hubs_sns": by_operation(hub_counter, "sns"),
        "hubs_sqs": by_operation(hub_counter, "sqs"),
        "hubs_empty_receives": hub_counter.empty_receives,
    }


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} {n:,}" for op, n in counts.items()) or "-"


def run(
    ep: Endpoint,
    *,
    instances: Sequence[int] = (1, 2, 4),
    subscribers: int = 1000,
    channels: int = 50,
    events: int = 6,
    interval: float = 1.0,
    hub_wait: int = 1,
    timeout: float = 120.0,
    entry_failure_every: int = 0,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    runs = [
        run_instances(
            ep,
            n,
            subscribers=subscribers,
            channels=channels,
            events=events,
            interval=interval,
            hub_wait=hub_wait,
            timeout=timeout,
            entry_failure_every=entry_failure_every,
        )
        for n in instances
    ]
    data: dict[str, Any] = {
        "sizes": {
            "instances": list(instances),
            "subscribers": subscribers,
            "channels": channels,
            "events_per_channel": events,
            "interval_s": interval,
            "hub_wait_s": hub_wait,
            "entry_failure_every": entry_failure_every,
        },
        "hub_target_ms_p99": HUB_TARGET_MS,
        "runs": runs,
    }
    rows = [
        [
            r["instances"],
            r["subscribers_per_instance"],
            f"{r['delivered']:,} / {r['expected']:,}",
            *(
                [
                    f"{r['delivered_percent']:g} %",
                    f"{r['entry_failures_injected']:,} / {r['entries_published']:,}",
                ]
                if entry_failure_every
                else []
            ),
            f"{r['subscribers_complete']:,} / {subscribers:,}",
            "{p50} / {p99}".format(**r["latency_ms_publish_to_subscriber"]),
            "{p50} / {p99}".format(**r["latency_ms_publish_returned_to_subscriber"]),
            "{p50} / {p99} / {max}".format(**r["hub_added_ms_received_to_queued"]),
            "{p50} / {p99}".format(**r["hub_dispatch_ms"]),
            "{p50} / {p99}".format(**r["hub_ms_received_to_read"]),
            _ops({**r["publisher_sns"], **r["hubs_sns"]}),
            _ops(r["hubs_sqs"]) + f" ({r['hubs_empty_receives']:,} empty)",
        ]
        for r in runs
    ]
    table = markdown_table(
        [
            "instances",
            "subscribers / instance",
            "delivered / expected",
            *(
                ["delivered %", "injected entry failures / entries sent"]
                if entry_failure_every
                else []
            ),
            "subscribers with every event",
            "publish → subscriber p50 / p99 ms",
            "publish returned → subscriber p50 / p99 ms",
            "hub added (received → queued) p50 / p99 / max ms",
            "of which dispatch p50 / p99 ms",
            "hub received → read by subscriber p50 / p99 ms",
            "SNS requests",
            "SQS requests (hubs)",
        ],
        rows,
    )
    table += (
        f"\n\n{subscribers:,} subscribers over {channels:,} channels, {events} events per "
        f"channel ({channels * events:,} published), hubs long-polling {hub_wait} s; "
        f"target for the hub's added latency: p99 < {HUB_TARGET_MS:g} ms."
    )
    title = "Fan-out mode: SNS FIFO topic, " + ", ".join(str(n) for n in instances)
    title += " hub instances"
    if entry_failure_every:
        table += (
            f" One PublishBatch entry in {entry_failure_every} failed (InternalError, sent "
            "again by the publisher)."
        )
        title += f", one entry failure per {entry_failure_every} published"
    write_result(
        "fanout_instances_entry_failures" if entry_failure_every else "fanout_instances",
        title,
        table,
        data,
        out,
        quiet=quiet,
    )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fanout_arguments(parser, channels=50, interval=1.0)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4], help="default 1 2 4")
    parser.add_argument(
        "--entry-failure-every",
        type=int,
        default=0,
        metavar="N",
        help="fail one PublishBatch entry per N sent, as a transient AWS failure (default: none)",
    )
    args = parser.parse_args(argv)
    if args.entry_failure_every < 0:
        parser.error("--entry-failure-every must be 0 (none) or more")
    if publisher_child(
        args, functools.partial(publish, entry_failure_every=args.entry_failure_every)
    ):
        return 0
    with serve() as ep:
        run(
            ep,
            instances=args.instances,
            subscribers=args.subscribers,
            channels=args.channels,
            events=args.events,
            interval=args.interval,
            entry_failure_every=args.entry_failure_every,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
