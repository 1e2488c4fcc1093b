"""Stopping a hub when its server stops, so a fan-out hub's instance queue goes at once
instead of waiting for a sweep. systemd and Kubernetes send SIGTERM to the whole process
group: every process of the server gets it at once, workers included.

- uvicorn: ``asgi_app(hub, ..., manage_hub=True)`` starts the hub at lifespan startup and
  stops it at lifespan shutdown; a Starlette app does the same in its own lifespan.
- hypercorn: the same app. Its workers leave SIGTERM to the default action (the master
  tells them to stop), so the group's SIGTERM would kill a worker before its lifespan
  shutdown: the fallback below stops the hub first.
- gunicorn: :func:`stop_on_sigterm` in the ``post_worker_init`` hook, and ``hub.stop()`` in
  ``worker_exit`` (and ``on_exit`` with ``--preload``). A gthread worker waits up to its
  graceful timeout for open connections, and SSE streams never end by themselves: without
  stopping the hub at the signal, the worker is killed before ``worker_exit`` runs.
- waitress (and anything else that installs no SIGTERM handler): the fallback below.

The fallback, :func:`stop_hubs_at_unhandled_sigterm`: a fan-out hub started in the main
thread (or by ``asgi_app``'s lifespan) installs, when SIGTERM's action is still the default,
a handler that stops the process's running fan-out hubs and then lets the default action
kill the process (it ends by SIGTERM as before, only later; more SIGTERMs meanwhile are
ignored). A server that handles SIGTERM
itself is left alone. A hub still running at a normal interpreter exit is stopped by an
``atexit`` handler. Only SIGKILL (or a crash) leaves the queue for the sweep.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from transflow.streaming.hub import ProgressHub

__all__ = ["stop_hubs_at_unhandled_sigterm", "stop_on_sigterm"]

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class _StopThenDie:
    """A handler for a signal whose action was the default: the first signal starts ``stop``
    in a thread, more signals meanwhile are ignored (a hypercorn master sends its own SIGTERM
    to the workers left when one exits), and once the stop is done the default action ends
    the process as the signal would have. The handler runs in the main thread between two
    bytecodes, maybe while that thread holds a lock the stop needs: it never stops the hub
    itself."""

    stop: Callable[[], object]
    _thread: threading.Thread | None = None
    _done: bool = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self._done:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        elif self._thread is None:
            log.info("signal %d: stopping the fan-out hubs of process %d", signum, os.getpid())
            self._thread = threading.Thread(
                target=self._run, args=(signum,), name="transflow-hub-stop", daemon=False
            )
            self._thread.start()

    def _run(self, signum: int) -> None:
        try:
            self.stop()
        except Exception:
            log.exception("stopping the hub at signal %d failed; a sweep will clean up", signum)
        finally:
            self._done = True
            os.kill(os.getpid(), signum)  # the handler, in the main thread, ends the process


def stop_on_sigterm(
    hub: ProgressHub, *, signals: Iterable[signal.Signals] = (signal.SIGTERM,)
) -> None:
    """Stop ``hub`` as soon as the process gets one of ``signals``, then pass the signal on
    to the handler that was installed before (a gunicorn worker's starts its graceful
    shutdown, which ends sooner once the hub has closed its streams).

    The hub stops in a thread of its own (the server's loop goes on meanwhile; the process
    waits for it at exit). With no handler before (the default action), the hub is stopped
    first and the process exits with ``128 + signal``. Call it from the main thread after
    the server installed its own handlers (gunicorn: ``post_worker_init``)."""
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


def _stop_running_hubs() -> None:
    from transflow.streaming.hub import stop_running_hubs  # noqa: PLC0415 - hub imports us

    stop_running_hubs()


def stop_hubs_at_unhandled_sigterm() -> bool:
    """When this is the main thread and SIGTERM's action is still the default (the process
    would die without running ``atexit`` or a lifespan shutdown: waitress, a hypercorn
    worker, a plain script), install a handler that stops this process's running fan-out
    hubs and then ends the process by SIGTERM. Returns whether the handler is in place.
    :meth:`ProgressHub.start <transflow.streaming.hub.ProgressHub.start>` calls it in
    fan-out mode, and ``asgi_app``'s lifespan after starting its hub."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _StopThenDie):
        return True
    if current != signal.SIG_DFL:
        return False  # the server handles it: its shutdown stops the hub
    signal.signal(signal.SIGTERM, _StopThenDie(_stop_running_hubs))
    return True
