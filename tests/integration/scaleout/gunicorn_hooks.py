"""gunicorn's configuration for the scale-out tests: the documented wiring that stops each
worker's hub at SIGTERM (so its instance queue goes at once) and again at exit."""

from __future__ import annotations

from typing import Any

from transflow.streaming.shutdown import stop_on_sigterm


def post_worker_init(worker: Any) -> None:
    from tests.integration.scaleout.app import hub

    stop_on_sigterm(hub)


def worker_exit(server: Any, worker: Any) -> None:
    from tests.integration.scaleout.app import hub

    hub.stop()


def on_exit(server: Any) -> None:
    # With --preload the master started a hub too (and it has a queue of its own).
    import sys

    app = sys.modules.get("tests.integration.scaleout.app")
    if app is not None:
        app.hub.stop()
