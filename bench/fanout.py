"""Fan-out: ``--subscribers`` SSE subscribers over ``--channels`` upload channels, served by
one ``ProgressHub`` consuming the progress queue.

A publisher in a child process (so that its CPU is not counted here) sends every channel's
events through ``ProgressPublisher``: ``start``, ``step:start``, ``--events`` minus 3
``progress`` events paced ``--interval`` apart, and ``done``. Each event carries the time it
was emitted. Subscribers are asyncio tasks awaiting ``Subscription.aget`` (how an ASGI SSE
endpoint reads its subscription). Measured: events delivered / expected, latency from emit
to delivery (p50, p99; the publisher holds ``progress`` events up to its 0.5 s flush delay
by design, so both figures are given for all events and for the events it sends at once),
CPU of this process per delivered event, and memory per subscriber (tracemalloc).

Run: ``python -m bench.fanout [--subscribers N] [--channels C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import tracemalloc
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
from bench.pipeline import BRANCH, HUB_WAIT, make_queues
from transflow import (
    ProgressEvent,
    ProgressHub,
    ProgressPublisher,
    ProgressQueue,
    ProgressType,
    Subscription,
    upload_channel,
)
from transflow._aws.metering import RequestCounter
from transflow._aws.sqs_batch import BatchResult

TERMINAL = (ProgressType.DONE, ProgressType.ERROR)


def upload_id(n: int) -> str:
    return f"fan-{n:05d}"


# -- the publisher (child process) --------------------------------------------------------


class _TimedPublisher(ProgressPublisher):
    """Notes when the queue accepted each event, to tell the hub's latency from the
    publisher's (deliberate) buffering and the endpoint's send time."""

    accepted: dict[str, float]

    def send(self, events: list[ProgressEvent], attempt_token: str | Sequence[str]) -> BatchResult:
        result = super().send(events, attempt_token)
        now = time.time()
        for event in events:
            self.accepted[f"{event.upload_id}:{event.seq}"] = now
        return result


def publish(endpoint_url: str, queue_url: str, channels: int, events: int, interval: float) -> None:
    """Send every channel's events; print the CPU it took and when each event was sent."""
    ep = Endpoint(endpoint_url)
    publisher = _TimedPublisher(ProgressQueue(queue_url), sqs=ep.sqs(RequestCounter()))
    publisher.accepted = {}
    streams = [publisher.stream(upload_id(n), BRANCH) for n in range(channels)]

    def emit(kind: ProgressType, **fields: Any) -> None:
        for stream in streams:
            stream.emit(kind, extra={"sentAt": time.time()}, **fields)

    emit(ProgressType.START)
    emit(ProgressType.STEP_START, step="work")
    for n in range(events - 3):
        time.sleep(interval)
        emit(ProgressType.PROGRESS, step="work", percent=100 * (n + 1) / (events - 2))
    time.sleep(interval)
    emit(ProgressType.DONE)
    for stream in streams:
        stream.close()
    print(json.dumps({"cpu": time.process_time(), "accepted": publisher.accepted}), flush=True)


# -- the subscribers ----------------------------------------------------------------------


async def follow(sub: Subscription, seen: list[tuple[str, float, float]]) -> int:
    """Read one subscription to its terminal event, noting (event id, emitted, delivered);
    return how many events came."""
    count = 0
    while True:
        event: ProgressEvent | None = await sub.aget(timeout=120)
        if event is None:
            return count
        emitted = float(event.extra.get("sentAt", 0.0))  # type: ignore[arg-type]
        seen.append((f"{event.upload_id}:{event.seq}", emitted, time.time()))
        count += 1
        if event.type in TERMINAL:
            return count


def run(
    ep: Endpoint,
    *,
    subscribers: int = 1000,
    channels: int = 200,
    events: int = 6,
    interval: float = 2.0,
    hub_wait: int = HUB_WAIT,
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    ep.reset()
    queues = make_queues(ep.sqs(RequestCounter()), prefix="fanout")
    counter = BenchCounter()
    hub = ProgressHub(
        ep.sqs(counter), ProgressQueue(queues.progress), wait_time_seconds=hub_wait
    ).start()
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "bench.fanout",
            "--publish",
            ep.endpoint_url,
            queues.progress,
            str(channels),
            str(events),
            str(interval),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    seen: list[tuple[str, float, float]] = []

    async def main() -> tuple[list[int], float, float, int]:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        subs = [
            hub.subscribe(upload_channel(BRANCH, upload_id(n % channels)))
            for n in range(subscribers)
        ]
        tasks = [asyncio.create_task(follow(s, seen)) for s in subs]
        await asyncio.sleep(0)  # every task is waiting on its subscription
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        counts = await asyncio.gather(*tasks)
        for sub in subs:
            sub.close()
        return list(counts), time.process_time() - cpu0, time.perf_counter() - wall0, grown

    counts, cpu, wall, grown = asyncio.run(main())
    assert child.stdout is not None
    report = json.loads(child.stdout.read().strip().splitlines()[-1])
    child.wait(timeout=30)
    accepted: dict[str, float] = report["accepted"]
    emit_lat = [done - emitted for _, emitted, done in seen]
    queue_lat = [done - accepted[key] for key, _, done in seen if key in accepted]
    stats = hub.stats()
    hub.stop()
    delivered = sum(counts)
    expected = subscribers * events
    data: dict[str, Any] = {
        "sizes": {
            "subscribers": subscribers,
            "channels": channels,
            "events_per_channel": events,
            "interval_s": interval,
        },
        "delivered": delivered,
        "expected": expected,
        "subscribers_saw_done": sum(1 for c in counts if c == events),
        "latency_ms_emit_to_delivery": quantiles_ms(emit_lat),
        "latency_ms_queue_to_delivery": quantiles_ms(queue_lat),
        "seconds": round(wall, 2),
        "cpu_us_per_delivered_event": round(1e6 * cpu / max(delivered, 1), 1),
        "memory_bytes_per_subscriber": round(grown / subscribers),
        "hub_sqs": by_operation(counter, "sqs"),
        "hub_empty_receives": counter.empty_receives,
        "hub_duplicates_dropped": stats.duplicates,
        "publisher_cpu_s": round(report["cpu"], 2),
    }
    rows = [
        ["delivered / expected", f"{delivered:,} / {expected:,}"],
        [
            "latency, sent to the queue → delivered, p50 / p99",
            "{p50} / {p99} ms".format(**data["latency_ms_queue_to_delivery"]),
        ],
        [
            "latency, emitted by the job → delivered, p50 / p99",
            "{p50} / {p99} ms".format(**data["latency_ms_emit_to_delivery"]),
        ],
        ["CPU per delivered event (hub + subscribers)", f"{data['cpu_us_per_delivered_event']} µs"],
        ["memory per subscriber", f"{data['memory_bytes_per_subscriber']:,} bytes"],
        ["hub SQS requests", ", ".join(f"{k} {v:,}" for k, v in data["hub_sqs"].items())],
    ]
    table = markdown_table(["fan-out", "measured"], rows)
    table += (
        f"\n\n{subscribers:,} subscribers over {channels:,} channels, {events} events per "
        f"channel ({channels * events:,} on the queue), one hub, {wall:.1f} s."
    )
    write_result("fanout", "Fan-out: one hub, many SSE subscribers", table, data, out, quiet=quiet)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args = fanout_arguments(parser, channels=200, interval=2.0).parse_args(argv)
    if publisher_child(args, publish):
        return 0
    with serve() as ep:
        run(
            ep,
            subscribers=args.subscribers,
            channels=args.channels,
            events=args.events,
            interval=args.interval,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
