"""A four-step template whose steps leave a trace, for checkpoint and retry tests.

Each step appends its name to a log file (``TRANSFLOW_DURABLE_LOG``), so a test counts the
runs of every step even across processes, and writes one output derived from the previous
one (deterministic: a resumed job must produce the same bytes). With
``TRANSFLOW_DURABLE_HANG=<step>`` that step logs ``<step>:hang`` and then blocks forever, so
a test can kill the worker process in the middle of it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from transflow import StepContext, TemplateRegistry

__all__ = [
    "STEPS",
    "TEMPLATE",
    "WorkerKilled",
    "build_registry",
    "expected_outputs",
    "registry",
    "step_log",
]

TEMPLATE = "four-steps"
STEPS = ("one", "two", "three", "four")
LOG_ENV = "TRANSFLOW_DURABLE_LOG"
HANG_ENV = "TRANSFLOW_DURABLE_HANG"


class WorkerKilled(BaseException):
    """What an in-process test raises to stand for a worker killed mid-step: nothing in the
    processor catches it, so no error record, no event and no webhook follow (as after a
    SIGKILL)."""


def step_log(path: Path) -> list[str]:
    """The lines the steps logged to ``path``."""
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def _log(line: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def _derive(step: str, previous: bytes) -> bytes:
    return f"{step}:{hashlib.sha256(previous).hexdigest()}\n".encode()


def expected_outputs(data: bytes) -> dict[str, bytes]:
    """The bytes each step writes (``{step}.txt``) for an input of ``data``."""
    outputs, previous = {}, data
    for step in STEPS:
        previous = outputs[step] = _derive(step, previous)
    return outputs


def build_registry(
    *,
    checkpoint: bool = True,
    uncheckpointed: tuple[str, ...] = (),
    crash_once: str | None = None,
    output_bucket: str | None = None,
) -> TemplateRegistry:
    """A registry with the four-step template (every step ``checkpoint`` or not; the steps
    in ``uncheckpointed`` not). ``crash_once`` names a step that raises
    :class:`WorkerKilled` the first time it runs."""
    crashed: list[str] = []
    built = TemplateRegistry()
    template = built.template(TEMPLATE, output_bucket=output_bucket)

    def make(step: str, index: int) -> None:
        def run(ctx: StepContext) -> None:
            _log(step)
            if os.environ.get(HANG_ENV) == step:
                _log(f"{step}:hang")
                threading.Event().wait()  # killed here by the test
            if step == crash_once and not crashed:
                crashed.append(step)
                raise WorkerKilled(step)
            # A resumed delivery downloads what the previous step wrote in an earlier one.
            source = (
                ctx.inputs[0].path if index == 0 else ctx.result_file(f"{STEPS[index - 1]}.txt")
            )
            target = ctx.path(f"{step}.txt")
            target.write_bytes(_derive(step, source.read_bytes()))
            ctx.upload_result(target, f"{step}.txt", "text/plain")

        template.add_step(step, run, checkpoint=checkpoint and step not in uncheckpointed)

    for index, step in enumerate(STEPS):
        make(step, index)
    return built


registry = build_registry()
"""For ``transflow worker --templates tests.support.durable:registry``."""
