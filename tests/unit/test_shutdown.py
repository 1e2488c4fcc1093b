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
