"""``make bench``: every benchmark in one run against one embedded moto server, at sizes
that finish in a few minutes on 2 cores (``--full`` for the issue's sizes: 1,000 uploads,
1,000 subscribers over 200 channels, a 10,000-file upload, 100 cold imports per handler, a
1 GiB multipart upload).
Results: bench/results/."""

from __future__ import annotations

import argparse
import logging
import time

from bench import (
    big_upload,
    checkpoints,
    cold_import,
    cost,
    fanout,
    fanout_instances,
    multipart,
    throughput,
)
from bench.common import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--full",
        action="store_true",
        help="the issue's sizes (slow on moto: the 10,000-file upload alone takes many minutes)",
    )
    args = parser.parse_args(argv)
    # Retries and failed jobs are logged by design; the tables are what matter here.
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    with serve() as ep:
        throughput.run(ep, jobs=1000 if args.full else 300)
        cost.run(ep, uploads=1000 if args.full else 300, baseline_uploads=100 if args.full else 60)
        fanout.run(ep, subscribers=1000, channels=200, events=6, interval=2.0)
        fanout_instances.run(ep, instances=(1, 2, 4), subscribers=1000, channels=50)
        # The "Done when": 100 % delivered with one entry failure per 50 published.
        fanout_instances.run(
            ep, instances=(1, 2, 4), subscribers=1000, channels=50, entry_failure_every=50
        )
        big_upload.run(ep, files=10_000 if args.full else 2_000)
        checkpoints.run(ep, jobs=100 if args.full else 40)
        multipart.run(ep, size=(1024 if args.full else 256) * 1024 * 1024)
    # No endpoint: fresh interpreters importing each Lambda handler, after the rest is done.
    cold_import.run(rounds=100 if args.full else 40)
    print(f"all benchmarks: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
