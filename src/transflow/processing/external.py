"""Running external tools (ffmpeg, ffprobe, …) from a step: a timeout, bounded output, and a
typed error that carries the exit code and the end of stderr.

Output is read by two threads while the program runs, so a chatty tool never blocks on a
full pipe, and memory stays bounded: stdout keeps its head (``max_stdout`` bytes, enough for
ffprobe's JSON), stderr its tail (``max_stderr`` bytes: where tools write why they failed).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs

from transflow.errors import (
    StepUsageError,
    ToolFailedError,
    ToolNotFoundError,
    ToolTimeoutError,
)

__all__ = ["ToolResult", "run_tool"]

_CHUNK = 65_536


@attrs.frozen
class ToolResult:
    """A tool run that exited with code 0."""

    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr_tail: str
    stdout_truncated: bool = False

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


def _keep_head(stream: IO[bytes], limit: int, out: list[bytes], truncated: list[bool]) -> None:
    kept = 0
    while chunk := stream.read(_CHUNK):
        room = limit - kept
        if len(chunk) > room and not truncated:
            truncated.append(True)
        if room > 0:
            out.append(chunk[:room])
            kept += min(len(chunk), room)
    stream.close()


def _keep_tail(stream: IO[bytes], limit: int, out: collections.deque[bytes]) -> None:
    size = 0
    while chunk := stream.read(_CHUNK):
        out.append(chunk)
        size += len(chunk)
        while out and size - len(out[0]) >= limit:
            size -= len(out.popleft())
    stream.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        # The tool may have started children of its own (shell pipelines): end the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    else:  # pragma: no cover - not a Lambda platform
        process.kill()


def run_tool(
    args: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    max_stdout: int = 10 * 1024 * 1024,
    max_stderr: int = 8 * 1024,
) -> ToolResult:
    """Run ``args`` (no shell) and wait at most ``timeout`` seconds.

    Raises :class:`ToolNotFoundError` when the program is not installed,
    :class:`ToolTimeoutError` when it ran too long (it is killed), and
    :class:`ToolFailedError` (with ``returncode`` and ``stderr_tail``) when it exited
    with a non-zero code."""
    if isinstance(args, str | bytes) or not args:
        raise StepUsageError(
            "ctx.run takes the program and its arguments as a list, e.g. "
            "['ffmpeg', '-i', str(path), 'out.m4a'], never a shell string"
        )
    if timeout <= 0:
        raise ToolTimeoutError([os.fspath(a) for a in args], max(timeout, 0.0), "")
    argv = tuple(os.fspath(a) for a in args)
    try:
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell: the caller's own tool
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(cwd) if cwd is not None else None,
            env=dict(env) if env is not None else None,
            start_new_session=os.name == "posix",
        )
    except FileNotFoundError as exc:
        raise ToolNotFoundError(
            f"{argv[0]!r} is not installed or not on PATH: install it (in Lambda, add it "
            "with a layer or a container image)",
            argv,
        ) from exc
    assert process.stdout is not None
    assert process.stderr is not None
    head: list[bytes] = []
    truncated: list[bool] = []
    tail: collections.deque[bytes] = collections.deque()
    readers = [
        threading.Thread(
            target=_keep_head, args=(process.stdout, max_stdout, head, truncated), daemon=True
        ),
        threading.Thread(target=_keep_tail, args=(process.stderr, max_stderr, tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process)
        process.wait()
    except BaseException:
        _kill(process)
        process.wait()
        raise
    finally:
        for reader in readers:
            reader.join()
    stderr_tail = b"".join(tail)[-max_stderr:].decode("utf-8", "replace")
    if timed_out:
        raise ToolTimeoutError(argv, timeout, stderr_tail)
    if process.returncode != 0:
        raise ToolFailedError(argv, process.returncode, stderr_tail)
    return ToolResult(argv, 0, b"".join(head), stderr_tail, bool(truncated))
