"""The order in which an event loop writes what dispatches woke (issue 26): one queue, oldest
first, so the writes of a dispatch are not held up by those of a later one, counted in
writes and crossings, which load does not change."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

import pytest

from transflow.streaming.waiters import CHUNK, LoopWaiters

STREAMS = 5 * CHUNK  # several loop callbacks per dispatch


class _Stream:
    """A parked subscription whose wake-up writes on the loop (as ``apps._LoopWriter``
    does): it records the write, and may do something (wake others) while writing."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, written: list[str]) -> None:
        self.name = name
        self._waiter: asyncio.Future[None] | None = loop.create_future()
        self._deadline: float | None = None
        self._slot: int | None = None
        self.written = written
        self.while_writing: Callable[[], None] | None = None

    def _direct(self) -> bool:
        self.written.append(self.name)
        action, self.while_writing = self.while_writing, None
        if action is not None:
            action()
        return True


def _from_another_thread(wake: Callable[[], None]) -> None:
    # As the hub's receive threads dispatch: off the loop.
    thread = threading.Thread(target=wake)
    thread.start()
    thread.join()


async def _written_in_order() -> tuple[list[str], int, int]:
    loop = asyncio.get_running_loop()
    waiters = LoopWaiters(loop)
    written: list[str] = []
    first = [_Stream(f"a{i}", loop, written) for i in range(STREAMS)]
    second = [_Stream(f"b{i}", loop, written) for i in range(STREAMS)]

    def dispatch(streams: list[_Stream]) -> Callable[[], None]:
        def wake() -> None:
            for stream in streams:
                waiters.wake(stream)

        return wake

    # The second dispatch comes while the loop writes the first one's (its first write).
    first[0].while_writing = lambda: _from_another_thread(dispatch(second))
    _from_another_thread(dispatch(first))

    async def everything() -> None:
        while len(written) < 2 * STREAMS:
            await asyncio.sleep(0)

    try:
        await asyncio.wait_for(everything(), 20)
    except asyncio.TimeoutError:
        pytest.fail(f"only {len(written)} of {2 * STREAMS} written")
    return written, waiters.wakeups, waiters.most_per_callback


def test_a_later_dispatch_waits_behind_the_writes_of_an_earlier_one() -> None:
    """Two dispatches of 160 writes each, the second arriving during the first one's first
    write: every write of the first comes before any of the second (before: they took turns,
    32 each, so the first one's last write waited for 128 of the second's), at most CHUNK
    per loop callback, and the second needs no crossing of its own (before: 2)."""
    written, crossings, most = asyncio.run(_written_in_order())
    order = [name[0] for name in written]
    assert order == ["a"] * STREAMS + ["b"] * STREAMS, "".join(
        f"{k}{sum(1 for _ in g)} " for k, g in itertools.groupby(order)
    )
    assert written == [f"a{i}" for i in range(STREAMS)] + [f"b{i}" for i in range(STREAMS)]
    assert most <= CHUNK
    assert crossings == 1
