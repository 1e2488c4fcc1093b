"""What every benchmark shares: the embedded endpoint, request counting, and writing a
Markdown table and a JSON file under bench/results/."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import attrs
import boto3
from botocore.config import Config

import transflow
from transflow._aws.metering import RequestCounter
from transflow.cli.local import DUMMY_KEY, DUMMY_REGION, local_client_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("TRANSFLOW_BENCH_RESULTS", Path(__file__).parent / "results"))


def machine() -> dict[str, Any]:
    """The machine the numbers came from."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "transflow": transflow.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(
    name: str,
    title: str,
    table: str,
    data: dict[str, Any],
    directory: Path | None = None,
    *,
    quiet: bool = False,
) -> Path:
    """bench/results/{name}.md and {name}.json (or in ``directory``); returns the Markdown
    path."""
    out = directory or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    md = out / f"{name}.md"
    md.write_text(
        f"# {title}\n\n{table}\n\nMachine: {info['platform']}, {info['cpus']} CPUs, "
        f"Python {info['python']}, transflow {info['transflow']}, {info['when']}.\n",
        encoding="utf-8",
    )
    (out / f"{name}.json").write_text(
        json.dumps({"machine": info, **data}, indent=2, sort_keys=True), encoding="utf-8"
    )
    if not quiet:
        print(md.read_text(encoding="utf-8"))
    return md


# -- counting -----------------------------------------------------------------------------


BenchCounter = RequestCounter
"""A :class:`RequestCounter`: it also counts the ReceiveMessage calls that came back empty."""


# -- the endpoint -------------------------------------------------------------------------


@attrs.define
class Endpoint:
    """An SQS/SNS/S3 endpoint (moto) and the clients bound to it, each counted by
    ``counter``.

    Clients are made with :meth:`sqs`, :meth:`sns` and :meth:`s3`; every one is attached to the
    :class:`RequestCounter` given (or to ``counter``), so no request goes uncounted."""

    endpoint_url: str
    server_pid: int | None = None
    counter: RequestCounter = attrs.field(factory=BenchCounter)

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=DUMMY_REGION
        )

    def _config(self, **overrides: Any) -> Config:
        settings: dict[str, Any] = {"max_pool_connections": 64, "connect_timeout": 5}
        settings.update(overrides)
        return local_client_config(**settings)

    def sqs(self, counter: RequestCounter | None = None, **config: Any) -> SQSClient:
        client = self.session().client(
            "sqs", endpoint_url=self.endpoint_url, config=self._config(**config)
        )
        (counter or self.counter).attach(client)
        return client

    def sns(self, counter: RequestCounter | None = None, **config: Any) -> SNSClient:
        client = self.session().client(
            "sns", endpoint_url=self.endpoint_url, config=self._config(**config)
        )
        (counter or self.counter).attach(client)
        return client

    def s3(self, counter: RequestCounter | None = None, **config: Any) -> S3Client:
        client = self.session().client(
            "s3", endpoint_url=self.endpoint_url, config=self._config(**config)
        )
        (counter or self.counter).attach(client)
        return client

    def reset(self) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own loopback endpoint
            f"{self.endpoint_url}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            response.read()

    def server_cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux), or None when in-process."""
        if self.server_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve() -> Iterator[Endpoint]:
    """moto's server (``LocalAws``) in a child process, for as long as the block runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the moto server did not start (is the dev extra installed?)")
        yield Endpoint(url, child.pid)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- small tools --------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> None:
    """Wait until ``condition()`` holds; raise ``TimeoutError`` naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(step)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def quantiles_ms(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of durations in seconds, in milliseconds to one decimal."""
    return {
        "p50": round(1000 * percentile(values, 50), 1),
        "p99": round(1000 * percentile(values, 99), 1),
        "max": round(1000 * max(values, default=0.0), 1),
    }


def fanout_arguments(
    parser: argparse.ArgumentParser, *, channels: int, interval: float
) -> argparse.ArgumentParser:
    """The options the fan-out benchmarks share, and the hidden ``--publish`` of their
    child publisher (five values after it)."""
    parser.add_argument("--subscribers", type=int, default=1000, help="default 1,000")
    parser.add_argument("--channels", type=int, default=channels, help=f"default {channels}")
    parser.add_argument("--events", type=int, default=6, help="events per channel (default 6)")
    parser.add_argument(
        "--interval",
        type=float,
        default=interval,
        help=f"seconds between progress rounds (default {interval:g})",
    )
    parser.add_argument("--publish", nargs=5, help=argparse.SUPPRESS)
    return parser


def publisher_child(
    args: argparse.Namespace, publish: Callable[[str, str, int, int, float], None]
) -> bool:
    """Be the fan-out benchmark's child publisher when ``--publish`` says so: wait for the
    parent's "go" line (its subscribers are ready), publish, and return True."""
    if not args.publish:
        return False
    url, target, channels, events, interval = args.publish
    sys.stdin.readline()
    publish(url, target, int(channels), int(events), float(interval))
    return True


def by_operation(counter: RequestCounter, service: str) -> dict[str, int]:
    """API calls per operation of one service."""
    return {op: n for (svc, op), n in sorted(counter.calls.items()) if svc == service}


def s3_created_record(bucket: str, key: str, sequencer: str, size: int = 0) -> dict[str, Any]:
    """One record of an S3 ``ObjectCreated:Put`` notification, as S3 sends it."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "sequencer": sequencer},
        },
    }


def fifo_queue(sqs: SQSClient, name: str, **attributes: str) -> str:
    """Create a FIFO queue; return its URL."""
    settings: dict[str, str] = {"FifoQueue": "true", **attributes}
    return sqs.create_queue(QueueName=name, Attributes=settings)["QueueUrl"]  # type: ignore[arg-type]


def lambda_event(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Lambda SQS event for messages of a ReceiveMessage response (what the event source
    mapping hands the function)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }
