"""The embedded moto endpoint (:class:`transflow.cli.local.LocalAws`) in a process of its own.

Benchmarks run the server here so that its CPU time and memory are not the client's: the
numbers of the bench process are transflow's alone. Prints the endpoint URL on the first
line of stdout and serves until its stdin is closed (the parent exits or closes it).
"""

from __future__ import annotations

import logging
import sys

from transflow.cli.local import LocalAws


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with LocalAws() as aws:
        print(aws.endpoint_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
