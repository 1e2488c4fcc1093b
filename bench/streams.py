"""Idle SSE subscribers per process (issue 26): what each costs one uvicorn worker.

Four kinds of process: moto's server (:mod:`bench.server`); one uvicorn worker serving
``sse.asgi_app(hub, secret=..., manage_hub=True)`` plus a ``/_stats`` route
(``server``); raw asyncio clients, at most 10,000 connections each (``clients``); and this
one, which publishes and measures. Per size: the server's memory per subscriber, its CPU
over an idle window (heartbeats only, 15 s apart), the lag of its loop (a 100 ms probe),
asyncio tasks per connection; then ``--channels`` x ``--events`` progress events, delivered
to every subscriber (counted by the clients), and the hub's dispatch->written quantiles.

Each process raises its soft open-file limit to the hard one: the hard limit
(``ulimit -Hn``) is where the sizes stop.

Run: ``python -m bench.streams --sizes 10000,19000`` (``--code`` names a source tree to run
the server from instead, e.g. main's, for a before/after; ``--http`` picks uvicorn's HTTP
protocol, ``httptools`` or ``h11``; ``--profile DIR`` writes cProfile figures of the server's
loop thread over the idle window and over the event burst).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Endpoint, fifo_queue, serve, write_result

SECRET = "bench-streams-secret-0123456789abcdef0123456789"  # noqa: S105 - a local bench
BRANCH = "main"
PER_CLIENT_PROCESS = 10_000


def _raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _channel(n: int) -> str:
    return f"upload:{BRANCH}:streams-{n:04d}"


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- the server ---------------------------------------------------------------------------


def _loop_counts() -> dict[str, int]:
    """What the loop's shared waiters did so far (load does not change these)."""
    try:
        from transflow.streaming.waiters import waiters_of  # noqa: PLC0415
    except ImportError:  # a tree from before the shared waiters
        return {}
    waiters = waiters_of(asyncio.get_running_loop())
    return {
        name: getattr(waiters, name)
        for name in ("wakeups", "ticks", "heartbeats", "direct_writes", "resolved", "callbacks")
        if isinstance(getattr(waiters, name, None), int)
    }


_PROFILERS: list[Any] = []


def _profile(query: dict[str, list[str]]) -> None:
    """``?profile_start`` / ``?profile_stop=PATH``: cProfile of the loop's thread only, where
    the streams' time goes (PATH gets the stats, PATH.txt the top 40 by own time)."""
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    if "profile_start" in query:
        _PROFILERS.append(cProfile.Profile())
        _PROFILERS[-1].enable()
    for path in query.get("profile_stop", []):
        if _PROFILERS:
            done = _PROFILERS.pop()
            done.disable()
            done.dump_stats(path)
            with Path(path).with_suffix(".txt").open("w") as out:
                stats = pstats.Stats(done, stream=out)
                stats.sort_stats("tottime").print_stats(40)
                stats.sort_stats("cumulative").print_stats(40)


def _http(choice: str) -> str:
    if choice != "auto":
        return choice
    import importlib.util  # noqa: PLC0415

    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


WRITES_TIMED = 1 << 18


def _time_every_write(hub: Any) -> None:
    """Keep every dispatch->written sample of a run, not the hub's last 4,096 (which would
    cover only the end of a burst of 100,000 writes): the quantiles are the whole burst's.
    Before any subscriber (each keeps the window it was given)."""
    fanout = getattr(hub, "_fanout", None)
    if fanout is None or not hasattr(fanout, "_written"):
        return  # a tree from before the timing
    from transflow.streaming.latency import Window  # noqa: PLC0415

    fanout._written = Window(WRITES_TIMED)


def _last_4096(hub: Any) -> dict[str, float]:
    """The quantiles the hub itself reports (its last 4,096 writes: the end of the burst),
    for runs recorded before every write was timed."""
    tail = sorted(list(hub._fanout._written._samples)[-4096:])
    if not tail:
        return {}
    last = len(tail) - 1
    return {
        f"{name}_ms": round(1000 * tail[min(last, int(q * len(tail)))], 3)
        for name, q in (("p50", 0.5), ("p99", 0.99))
    }


def run_server(endpoint_url: str, queue_url: str, port: int, http: str = "auto") -> None:
    from urllib.parse import parse_qs  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from transflow import ProgressHub, ProgressQueue, StreamLimits, asgi_app  # noqa: PLC0415

    _raise_nofile()
    hub = ProgressHub(Endpoint(endpoint_url).sqs(), ProgressQueue(queue_url), wait_time_seconds=1)
    _time_every_write(hub)
    limits = StreamLimits(max_streams=100_000, max_streams_per_token=100_000)
    app = asgi_app(hub, secret=SECRET, manage_hub=True, limits=limits)
    lags: list[float] = []

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.1)
            lags.append(loop.time() - before - 0.1)

    probing: list[asyncio.Task[None]] = []

    async def stats(send: Any, query: dict[str, list[str]]) -> None:
        _profile(query)
        window = sorted(lags)
        lags.clear()
        body: dict[str, Any] = {
            "rss_kb": _rss_kb(),
            "tasks": len(asyncio.all_tasks()),
            "lag_p99_ms": 1000 * window[int(0.99 * (len(window) - 1))] if window else 0.0,
            "lag_max_ms": 1000 * window[-1] if window else 0.0,
            "loop": _loop_counts(),
            "http": _http(http),
            # CPU of the loop's thread (this handler runs on it) and of the whole process:
            # the rest is the hub's receive threads, which hold the GIL the loop waits for.
            "loop_cpu_s": time.thread_time(),
            "process_cpu_s": time.process_time(),
        }
        try:
            got = hub.stats()
            body["subscribers"] = got.subscribers
            body["delivered"] = got.delivered
            written = getattr(got, "written", None)
            if written is not None and hasattr(hub._fanout, "written"):
                body["written"] = {
                    "p50_ms": written.p50_ms,
                    "p99_ms": written.p99_ms,
                    "max_ms": written.max_ms,
                    "count": written.count,
                }
                body["written_last_4096"] = _last_4096(hub)
                body["loop_lag"] = {"p99_ms": got.loop_lag.p99_ms, "max_ms": got.loop_lag.max_ms}
        except AttributeError:
            body["subscribers"] = hub._fanout.stats().subscribers
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": data})

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if not probing and scope["type"] != "lifespan":
            probing.append(asyncio.ensure_future(probe()))
        if scope["type"] == "http" and scope["path"] == "/_stats":
            await stats(send, parse_qs(scope["query_string"].decode()))
            return
        await app(scope, receive, send)

    uvicorn.run(
        wrapper,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        backlog=4096,
        access_log=False,
        http=_http(http),
    )


# -- the clients --------------------------------------------------------------------------


def run_clients(port: int, first: int, count: int, channels: int) -> None:
    from transflow import issue_stream_token  # noqa: PLC0415

    _raise_nofile()
    tokens = [issue_stream_token(SECRET, _channel(c), ttl=3600) for c in range(channels)]
    events = [0] * count
    opened = [0]

    async def one(i: int) -> None:
        n = first + i
        # Many source addresses: one address has 28,000 ephemeral ports.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(f"127.0.0.{2 + n // 15_000}", 0), limit=1 << 16
        )
        c = n % channels
        writer.write(
            f"GET /?channel={_channel(c)}&token={tokens[c]} HTTP/1.1\r\nHost: b\r\n\r\n".encode()
        )
        tail = b""
        seen_snapshot = False
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                return
            data = tail + chunk
            if not seen_snapshot and b"event: snapshot" in data:
                seen_snapshot = True
                opened[0] += 1
            events[i] += data.count(b"\nid: ")
            tail = data[-4:]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        conns = []
        for start in range(0, count, 500):
            batch = [asyncio.ensure_future(one(i)) for i in range(start, min(count, start + 500))]
            conns.extend(batch)
            await asyncio.sleep(0)
            deadline = loop.time() + 60
            while opened[0] < min(count, start + 500) and loop.time() < deadline:
                await asyncio.sleep(0.05)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print(json.dumps({"opened": opened[0]}), flush=True)
        while line := await reader.readline():
            if line.strip() == b"report":
                print(
                    json.dumps(
                        {
                            "opened": opened[0],
                            "events": sum(events),
                            "complete": sum(1 for e in events if e >= 1),
                        }
                    ),
                    flush=True,
                )
        for conn in conns:
            conn.cancel()

    asyncio.run(main())


# -- the conductor ------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    user, system = _cpu_split(pid)
    return user + system


def _cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``: system is mostly the sockets' send, which on
    loopback also runs the receiving side's TCP stack."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _get(port: int, query: str = "") -> dict[str, Any]:
    import urllib.request  # noqa: PLC0415

    url = f"http://127.0.0.1:{port}/_stats?{query}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def measure(size: int, args: argparse.Namespace, port: int) -> dict[str, Any]:  # noqa: PLR0915
    env = {**os.environ, "PYTHONPATH": f"{args.code}:{ROOT}" if args.code else str(ROOT)}
    with serve() as ep:
        sqs = ep.sqs()
        queue = fifo_queue(sqs, f"streams-{size}.fifo")
        server = subprocess.Popen(  # noqa: S603 - our own module
            [
                *(sys.executable, "-m", "bench.streams", "server"),
                *(ep.endpoint_url, queue, str(port), args.http),
            ],
            cwd=ROOT,
            env=env,
        )
        clients: list[subprocess.Popen[str]] = []
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    base = _get(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            cpu0, t0 = _cpu(server.pid), time.monotonic()
            time.sleep(args.idle / 2)
            baseline = (_cpu(server.pid) - cpu0) / (time.monotonic() - t0)
            started = time.monotonic()
            for first in range(0, size, PER_CLIENT_PROCESS):
                count = min(PER_CLIENT_PROCESS, size - first)
                clients.append(
                    subprocess.Popen(  # noqa: S603 - our own module
                        [
                            sys.executable,
                            "-m",
                            "bench.streams",
                            "clients",
                            str(port),
                            str(first),
                            str(count),
                            str(args.channels),
                        ],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            opened = sum(json.loads(c.stdout.readline())["opened"] for c in clients)  # type: ignore[union-attr]
            connect_s = time.monotonic() - started
            connected = _get(port, _profiling(args, "start"))
            cpu0, t0 = _cpu(server.pid), time.monotonic()
            split0 = _cpu_split(server.pid)
            time.sleep(args.idle)
            idle = _get(port, _profiling(args, f"stop={args.profile}/{size}_idle.prof"))
            split1 = _cpu_split(server.pid)
            cpu = (_cpu(server.pid) - cpu0) / (time.monotonic() - t0)
            system_share = (split1[1] - split0[1]) / max(1e-9, sum(split1) - sum(split0))
            load = os.getloadavg()
            burst0 = _get(port, _profiling(args, "start"))
            spy = _spy(args, server.pid, size)
            burst_started = time.monotonic()
            _publish(ep, queue, args.channels, args.events)
            expected = opened * args.events
            deadline = time.monotonic() + 120
            got = 0
            while time.monotonic() < deadline:
                got = 0
                for c in clients:
                    c.stdin.write("report\n")  # type: ignore[union-attr]
                    c.stdin.flush()  # type: ignore[union-attr]
                    got += json.loads(c.stdout.readline())["events"]  # type: ignore[union-attr]
                if got >= expected:
                    break
                time.sleep(1)
            burst_s = time.monotonic() - burst_started
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
                spy.wait(timeout=60)
            after = _get(port, _profiling(args, f"stop={args.profile}/{size}_burst.prof"))
        finally:
            for c in clients:
                c.stdin.close()  # type: ignore[union-attr]
                c.kill()
                c.wait()
            server.terminate()
            server.wait(timeout=30)
    subs = max(1, connected["subscribers"])
    idle_loop = _delta(idle.get("loop", {}), connected.get("loop", {}))
    return {
        "size": size,
        "http": connected.get("http", "h11"),
        "code": args.code or "this tree",
        "opened": opened,
        "subscribers": connected["subscribers"],
        "connect_s": round(connect_s, 1),
        "kb_per_subscriber": round((connected["rss_kb"] - base["rss_kb"]) / subs, 1),
        "tasks_per_connection": round((connected["tasks"] - base["tasks"]) / subs, 2),
        "idle_cpu_pct": round(100 * cpu, 2),
        "baseline_cpu_pct": round(100 * baseline, 2),
        "idle_cpu_per_10k_pct": round(100 * (cpu - baseline) * 10_000 / subs, 2),
        "idle_cpu_system_share": round(system_share, 2),
        "idle_lag_p99_ms": round(idle["lag_p99_ms"], 1),
        "idle_lag_max_ms": round(idle["lag_max_ms"], 1),
        "hub_loop_lag": idle.get("loop_lag"),
        "delivered": got,
        "expected": expected,
        "written": after.get("written"),
        "written_last_4096": after.get("written_last_4096"),
        "loop_idle": idle_loop,
        "loop_burst": _delta(after.get("loop", {}), burst0.get("loop", {})),
        # Until the clients counted every event (polled each second): the upper bound.
        "burst_s": round(burst_s, 1),
        "burst_cpu_s": {
            name: round(after.get(name, 0.0) - burst0.get(name, 0.0), 2)
            for name in ("loop_cpu_s", "process_cpu_s")
        },
        "idle_s": args.idle,
        "spy_loop_samples": _spy_split(Path(args.spy) / f"{size}_burst.spy.txt")
        if args.spy
        else None,
        "load_avg": [round(x, 2) for x in load],
    }


def _spy(args: argparse.Namespace, pid: int, size: int) -> subprocess.Popen[bytes] | None:
    """``--spy DIR``: py-spy samples of the server over the burst (every thread, idle ones
    too), as collapsed stacks in DIR/{size}_burst.spy.txt: no instrumentation, so the
    split between the loop's sends, its Python and its waiting is as it runs."""
    if not args.spy:
        return None
    out = Path(args.spy) / f"{size}_burst.spy.txt"
    return subprocess.Popen(  # noqa: S603 - py-spy of this venv
        [
            *(str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)),
            *("--rate", "200", "--format", "raw", "--threads", "--idle", "--nonblocking"),
            *("--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _spy_split(path: Path) -> dict[str, int]:
    """The loop thread's samples by where its innermost frame was: waiting in epoll (the
    loop had nothing to do), in asyncio's socket write (the ``send`` system call: on
    loopback it runs the client's TCP receive too; and taking the GIL back after it),
    in transflow, uvicorn or the rest of asyncio."""
    split = dict.fromkeys(("epoll", "socket_write", "transflow", "uvicorn", "asyncio", "other"), 0)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "MainThread" not in stack.split(";", 1)[0] or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if "selectors.py" in leaf:
            kind = "epoll"
        elif "Transport.write (" in leaf and "selector_events.py" in leaf:
            kind = "socket_write"
        elif "transflow" in leaf:
            kind = "transflow"
        elif "uvicorn" in leaf:
            kind = "uvicorn"
        elif "asyncio" in leaf:
            kind = "asyncio"
        else:
            kind = "other"
        split[kind] += int(count)
    return split


def _profiling(args: argparse.Namespace, what: str) -> str:
    if not args.profile:
        return ""
    return f"profile_{what}" if "=" in what else f"profile_{what}=1"


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def _publish(ep: Endpoint, queue: str, channels: int, events: int) -> None:
    from transflow import ProgressPublisher, ProgressQueue, ProgressType  # noqa: PLC0415

    publisher = ProgressPublisher(ProgressQueue(queue), sqs=ep.sqs())
    streams = [publisher.stream(_channel(c).rsplit(":", 1)[1], BRANCH) for c in range(channels)]
    for stream in streams:
        stream.emit(ProgressType.START)
        stream.emit(ProgressType.STEP_START, step="work")
    for n in range(events - 3):
        for stream in streams:
            stream.emit(ProgressType.PROGRESS, step="work", percent=10 * (n + 1))
    for stream in streams:
        stream.emit(ProgressType.DONE)
        stream.close()


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    sizes: list[int],
    *,
    channels: int = 100,
    events: int = 10,
    idle: float = 31.0,
    code: str = "",
    http: str = "auto",
    profile: str = "",
    spy: str = "",
    name: str = "streams",
    out: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Measure each size in turn (a fresh moto, server and clients each); write the results."""
    hard = _raise_nofile()
    if profile:
        Path(profile).mkdir(parents=True, exist_ok=True)
        profile = str(Path(profile).resolve())
    if spy:
        Path(spy).mkdir(parents=True, exist_ok=True)
        spy = str(Path(spy).resolve())
    args = argparse.Namespace(
        channels=channels,
        events=events,
        idle=idle,
        code=code,
        http=http,
        profile=profile,
        spy=spy,
    )
    rows = []
    for size in sizes:
        row = measure(size, args, _free_port())
        if not quiet:
            print(json.dumps(row), flush=True)
        rows.append(row)
    data = {"hard_nofile": hard, "rows": rows}
    table = "\n".join(json.dumps(row) for row in rows)
    write_result(name, "Idle SSE subscribers per process", table, data, out, quiet=quiet)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", nargs="?", default="conduct")
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--sizes", default="10000,19000")
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--idle", type=float, default=31.0)
    parser.add_argument("--code", default="", help="a src/ directory to run the server from")
    parser.add_argument("--http", default="auto", choices=["auto", "httptools", "h11"])
    parser.add_argument("--profile", default="", help="a directory for cProfile figures")
    parser.add_argument("--spy", default="", help="a directory for py-spy samples of the burst")
    parser.add_argument("--name", default="streams")
    args = parser.parse_args()
    if args.role == "server":
        run_server(args.rest[0], args.rest[1], int(args.rest[2]), args.rest[3])
        return
    if args.role == "clients":
        port, first, count, channels = (int(x) for x in args.rest[:4])
        run_clients(port, first, count, channels)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    run(
        sizes,
        channels=args.channels,
        events=args.events,
        idle=args.idle,
        code=args.code,
        http=args.http,
        profile=args.profile,
        spy=args.spy,
        name=args.name,
    )


if __name__ == "__main__":
    main()
