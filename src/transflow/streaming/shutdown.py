"""Stopping a hub when its server stops, so a fan-out hub's instance queue goes at once
instead of waiting for a sweep.

- ASGI servers (uvicorn, hypercorn): ``asgi_app(hub, ..., manage_hub=True)`` starts the hub
  at lifespan startup and stops it at lifespan shutdown; a Starlette app does the same in
  its own lifespan.
- gunicorn: :func:`stop_on_sigterm` in the ``post_worker_init`` hook, and ``hub.stop()`` in
  ``worker_exit`` (and ``on_exit`` with ``--preload``). A gthread worker waits up to its
  graceful timeout for open connections, and SSE streams never end by themselves: without
  stopping the hub at the signal, the worker is killed before ``worker_exit`` runs.
- Anything else: a fan-out hub still running at a normal interpreter exit is stopped by an
  ``atexit`` handler. Only SIGKILL (or a crash) leaves the queue for the sweep.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transflow.streaming.hub import ProgressHub

__all__ = ["stop_on_sigterm"]


def stop_on_sigterm(
    hub: ProgressHub, *, signals: Iterable[signal.Signals] = (signal.SIGTERM,)
) -> None:
    """Stop ``hub`` as soon as the process gets one of ``signals``, then pass the signal on
    to the handler that was installed before (a gunicorn worker's starts its graceful
    shutdown, which ends sooner once the hub has closed its streams).

    The hub stops in a thread of its own (the server's loop goes on meanwhile; the process
    waits for it at exit). With no handler before (the default action), the hub is stopped
    first and the process exits with ``128 + signal``. Call it from the main thread after the
    server installed its own handlers (gunicorn: ``post_worker_init``)."""
    for sig in signals:
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: object = previous) -> None:
            if callable(previous):
                threading.Thread(target=hub.stop, name="transflow-hub-stop").start()
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                hub.stop()
                sys.exit(128 + signum)

        signal.signal(sig, handler)
