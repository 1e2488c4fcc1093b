"""stop_on_sigterm stops the hub at the signal and hands the signal on."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from transflow.streaming.shutdown import stop_on_sigterm


class Hub:
    def __init__(self) -> None:
        self.stopped = threading.Event()

    def stop(self, timeout: float | None = None) -> bool:
        self.stopped.set()
        return True


@pytest.fixture
def usr1() -> Iterator[None]:
    before = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_the_hub_stops_and_the_previous_handler_still_runs(usr1: None) -> None:
    seen: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _frame: seen.append(signum))
    hub: Any = Hub()
    stop_on_sigterm(hub, signals=[signal.SIGUSR1])
    os.kill(os.getpid(), signal.SIGUSR1)
    assert hub.stopped.wait(5)
    assert seen == [signal.SIGUSR1]


def test_with_the_default_action_the_hub_stops_then_the_process_exits(usr1: None) -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    hub: Any = Hub()
    stop_on_sigterm(hub, signals=[signal.SIGUSR1])
    with pytest.raises(SystemExit) as exit_:
        os.kill(os.getpid(), signal.SIGUSR1)
    assert exit_.value.code == 128 + signal.SIGUSR1
    assert hub.stopped.is_set()


def test_an_ignored_signal_stays_ignored(usr1: None) -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    hub: Any = Hub()
    stop_on_sigterm(hub, signals=[signal.SIGUSR1])
    os.kill(os.getpid(), signal.SIGUSR1)
    assert not hub.stopped.is_set()


_FALLBACK = """
import os, signal, sys, threading, time
from transflow.streaming import shutdown

marker = sys.argv[1]

def stop():
    # A second SIGTERM (a hypercorn master's) arrives while the hub is stopping.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    with open(marker, "w") as f:
        f.write("stopped")

shutdown._stop_running_hubs = stop
assert shutdown.stop_hubs_at_unhandled_sigterm()
assert shutdown.stop_hubs_at_unhandled_sigterm()  # once is enough
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
while True:
    time.sleep(0.05)
"""


def test_an_unhandled_sigterm_stops_the_hubs_then_ends_the_process_by_the_signal(
    tmp_path: Any,
) -> None:
    import subprocess
    import sys

    marker = tmp_path / "stopped"
    done = subprocess.run(
        [sys.executable, "-c", _FALLBACK, str(marker)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert marker.read_text() == "stopped"  # the second signal did not cut the stop short


def test_a_server_that_handles_sigterm_is_left_alone() -> None:
    from transflow.streaming.shutdown import stop_hubs_at_unhandled_sigterm

    before = signal.getsignal(signal.SIGTERM)
    mine = lambda _signum, _frame: None  # noqa: E731 - a server's own handler
    signal.signal(signal.SIGTERM, mine)
    try:
        assert stop_hubs_at_unhandled_sigterm() is False
        assert signal.getsignal(signal.SIGTERM) is mine
        outcome: list[bool] = []
        worker = threading.Thread(target=lambda: outcome.append(stop_hubs_at_unhandled_sigterm()))
        worker.start()
        worker.join(5)
        assert outcome == [False]  # not the main thread: no handler can be installed
    finally:
        signal.signal(signal.SIGTERM, before)
