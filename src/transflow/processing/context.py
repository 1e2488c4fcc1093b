"""What a step sees and may do: :class:`StepContext`.

A step gets its job, its inputs as local files, where its outputs go, and five verbs:
``upload_result``, ``result_file``, ``progress``, ``publish`` and ``run``. The context does
no AWS I/O itself: the processor hands it a :class:`JobRuntime` that stores outputs and
sends events, so the rules here (which output names are allowed, what an event may carry)
are plain code.
"""

from __future__ import annotations

import json
import math
import mimetypes
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.keys import STATUS_RECORD_NAME
from transflow._wire.model import JsonValue, ProcessingJob, ProgressType, S3ObjectRef, UserContext
from transflow.errors import OutputPathError, StepUsageError

if TYPE_CHECKING:
    from transflow.processing.external import ToolResult

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "InputFile",
    "JobInputs",
    "JobRuntime",
    "OutputFile",
    "OutputLocation",
    "StepContext",
    "output_key",
]

DEFAULT_COMMAND_TIMEOUT = 600.0
"""Seconds `StepContext.run` lets a command run when the step gives no ``timeout``."""

# Seconds kept back from a command's timeout in Lambda, so the job can still report failure.
COMMAND_TIME_RESERVE = 5.0
MAX_S3_KEY_BYTES = 1024
_EVENT_FIELDS = frozenset({"step", "key", "message", "name", "bucket", "template_id", "percent"})
# start, done and error belong to the processor: a step announcing them would lie.
_STEP_EVENT_TYPES = (ProgressType.PROGRESS, ProgressType.OUTPUT)


@attrs.frozen
class InputFile:
    """One input of the job, downloaded to ``path`` in the job's temporary directory."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    path: Path
    name: str
    bucket: str
    key: str
    size: int
    etag: str = ""
    content_type: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)


class JobInputs(Sequence[InputFile]):
    """The inputs of a job, each downloaded the first time a step takes it
    (``ctx.inputs[0]``, or iterating): a template whose steps never look at their inputs
    downloads nothing. ``len()`` and :attr:`refs` cost nothing; a downloaded input is kept
    for the later steps of the delivery. ``fetch(index)`` downloads input ``index``."""

    def __init__(self, refs: Sequence[S3ObjectRef], fetch: Callable[[int], InputFile]) -> None:
        self.refs = tuple(refs)
        self._fetch = fetch
        self._files: dict[int, InputFile] = {}
        self._lock = threading.Lock()  # a step may read its inputs from threads

    def __len__(self) -> int:
        return len(self.refs)

    def _file(self, index: int) -> InputFile:
        with self._lock:
            found = self._files.get(index)
            if found is None:
                found = self._files[index] = self._fetch(index)
            return found

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self._file(i) for i in range(len(self.refs))[index])
        return self._file(range(len(self.refs))[index])

    def __iter__(self) -> Iterator[InputFile]:
        return (self._file(i) for i in range(len(self.refs)))

    def opened(self) -> tuple[InputFile, ...]:
        """The inputs downloaded so far, in the job's order."""
        with self._lock:
            return tuple(self._files[i] for i in sorted(self._files))

    def unopened(self) -> tuple[S3ObjectRef, ...]:
        """The inputs no step took, in the job's order."""
        with self._lock:
            return tuple(r for i, r in enumerate(self.refs) if i not in self._files)


@attrs.frozen
class OutputFile:
    """One output written to S3 by ``ctx.upload_result``."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    step: str
    name: str
    bucket: str
    key: str
    size: int
    content_type: str
    etag: str = ""


def output_key(prefix: str, name: str) -> str:
    """The S3 key of output ``name`` under ``prefix``; raises :class:`OutputPathError` for a
    name that could land anywhere else, or on the status record."""
    if not isinstance(name, str) or not name:
        raise OutputPathError(f"output name must be a non-empty string, not {name!r}")
    problem = None
    if name.startswith("/"):
        problem = "it is absolute"
    elif "\\" in name:
        problem = "it contains a backslash"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        problem = "it contains control characters"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        problem = "it has an empty, '.' or '..' path segment"
    elif name == STATUS_RECORD_NAME:
        problem = f"{STATUS_RECORD_NAME} is the job's status record"
    if problem:
        raise OutputPathError(
            f"output name {name!r} is refused because {problem}: outputs are written under "
            f"{prefix!r}; use a relative name such as 'audio/preview.mp3'"
        )
    key = prefix + name
    if len(key.encode("utf-8", "surrogatepass")) > MAX_S3_KEY_BYTES:
        raise OutputPathError(
            f"output key {key[:80]!r}… is over S3's {MAX_S3_KEY_BYTES}-byte limit: use a "
            "shorter name"
        )
    return key


@attrs.frozen
class OutputLocation:
    """Where a job's outputs go: ``s3://{bucket}/{prefix}``."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    bucket: str
    prefix: str

    def key(self, name: str) -> str:
        """The key of output ``name`` (checked, see :func:`output_key`)."""
        return output_key(self.prefix, name)

    @property
    def uri(self) -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}"


class JobRuntime(Protocol):
    """What the processor provides to the contexts of one job."""

    def emit(self, type: ProgressType, fields: Mapping[str, Any]) -> None:
        """Queue a progress event of the job."""

    def store_output(self, local_path: Path, bucket: str, key: str, content_type: str) -> str:
        """Stream a file to S3; return its ETag."""

    def record_output(self, output: OutputFile) -> None:
        """Remember an output for the status record."""

    def remaining_time(self) -> float:
        """Seconds left before the Lambda deadline (``math.inf`` outside Lambda)."""

    def recorded_outputs(self) -> Mapping[str, Sequence[OutputFile]]:
        """The outputs of the job so far, by step (with those of resumed steps)."""

    def fetch_output(self, output: OutputFile, local_path: Path) -> None:
        """Download an output to ``local_path``."""


def _json_value(name: str, value: object) -> JsonValue:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StepUsageError(
            f"event field {name!r} must be JSON (str, number, bool, None, list, dict), not "
            f"{type(value).__name__}: {exc}"
        ) from None
    return value  # type: ignore[return-value]  # checked just above


@attrs.define(eq=False)
class StepContext:
    """The job as one step sees it, and what the step may do.

    ``inputs`` are local files in ``work_dir`` (removed after the job, success or not),
    each downloaded when the step first takes it (:class:`JobInputs`); outputs go to
    ``output`` through :meth:`upload_result`.
    """

    __repr__ = fields_repr

    job: ProcessingJob
    template_id: str
    step: str
    inputs: Sequence[InputFile]
    work_dir: Path
    output: OutputLocation
    attempt: int
    _runtime: JobRuntime = attrs.field(alias="_runtime", repr=False)

    @property
    def upload_id(self) -> str:
        """The upload this job belongs to."""
        return self.job.upload_id

    @property
    def branch(self) -> str:
        """The branch (environment) of the upload."""
        return self.job.branch

    @property
    def fields(self) -> Mapping[str, JsonValue]:
        """Form fields the client sent with the upload."""
        return self.job.fields

    @property
    def user(self) -> UserContext | None:
        """Who uploaded, when the upload was made by a signed-in user."""
        return self.job.user

    def upload_result(
        self,
        local_path: str | os.PathLike[str],
        name: str,
        content_type: str | None = None,
    ) -> OutputFile:
        """Stream a local file to ``{output prefix}{name}``, record it under this step in
        the status record, and emit an ``output`` event.

        ``name`` is relative (``"preview/clip.mp3"``); a name that escapes the prefix raises
        :class:`OutputPathError`. The content type is guessed from ``name`` when omitted."""
        key = self.output.key(name)
        path = Path(local_path)
        if not path.is_file():
            raise StepUsageError(f"upload_result({name!r}): {path} is not a file")
        kind = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        size = path.stat().st_size
        etag = self._runtime.store_output(path, self.output.bucket, key, kind)
        result = OutputFile(self.step, name, self.output.bucket, key, size, kind, etag)
        self._runtime.record_output(result)
        self._keep_local(path, name)
        self._runtime.emit(
            ProgressType.OUTPUT,
            {"step": self.step, "name": name, "bucket": self.output.bucket, "key": key},
        )
        return result

    def _keep_local(self, path: Path, name: str) -> None:
        # Later steps of this delivery get it from result_file without a download.
        kept = self.work_dir / "results" / name
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.unlink(missing_ok=True)
        try:
            os.link(path, kept)
        except OSError:
            shutil.copyfile(path, kept)

    def result_file(self, name: str) -> Path:
        """A local copy of output ``name`` that an earlier step of this job wrote with
        :meth:`upload_result`: its file when that step ran in this delivery, else a download
        (the delivery resumed after that step's checkpoint). Pass files between steps this
        way: a resumed delivery starts without the earlier steps' local files. Leave a file
        unchanged once uploaded: in the same delivery the copy is a hard link to it."""
        found = [
            output
            for outputs in self._runtime.recorded_outputs().values()
            for output in outputs
            if output.name == name
        ]
        if not found:
            raise StepUsageError(
                f"result_file({name!r}): no earlier step of this job wrote an output called "
                f"{name!r}; write it with ctx.upload_result(path, {name!r}) first"
            )
        kept = self.work_dir / "results" / name
        if not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            self._runtime.fetch_output(found[-1], kept)
        return kept

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report how far this step is (0-100). Sent within the publisher's flush delay."""
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not math.isfinite(percent)
            or not 0 <= percent <= 100
        ):
            raise StepUsageError(
                f"progress percent must be a number from 0 to 100, not {percent!r}"
            )
        fields: dict[str, Any] = {"step": self.step, "percent": percent}
        if message is not None:
            fields["message"] = str(message)
        self._runtime.emit(ProgressType.PROGRESS, fields)

    def publish(self, type: ProgressType | str, **data: Any) -> None:
        """Emit a ``progress`` or ``output`` event with any JSON fields; ``step`` defaults
        to this step. ``start``, ``step:*``, ``done`` and ``error`` are the processor's."""
        try:
            kind = ProgressType(type)
        except ValueError:
            kind = None
        if kind not in _STEP_EVENT_TYPES:
            allowed = ", ".join(repr(t.value) for t in _STEP_EVENT_TYPES)
            raise StepUsageError(
                f"a step may publish {allowed} events, not {type!r}: the processor sends "
                "start, step:start, step:done, done and error itself"
            )
        fields: dict[str, Any] = {"step": self.step}
        extra: dict[str, JsonValue] = {}
        for name, value in data.items():
            if name in _EVENT_FIELDS:
                fields[name] = value
            else:
                extra[name] = _json_value(name, value)
        if extra:
            fields["extra"] = extra
        assert kind is not None
        self._runtime.emit(kind, fields)

    def run(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        max_stdout: int = 10 * 1024 * 1024,
    ) -> ToolResult:
        """Run an external tool in the job's directory; see :func:`~.external.run_tool`.

        The timeout defaults to 600 s and is cut to the Lambda time left (minus a small
        reserve), so a hung tool fails the job cleanly instead of the Lambda timing out."""
        # Imported on first use: most templates never run a tool, and a Lambda's cold start
        # should not pay for the subprocess machinery they do not use.
        from transflow.processing.external import run_tool  # noqa: PLC0415

        limit = DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout
        left = self.remaining_time()
        if math.isfinite(left):
            limit = min(limit, left - COMMAND_TIME_RESERVE)
        return run_tool(
            args,
            timeout=limit,
            cwd=cwd if cwd is not None else self.work_dir,
            env=env,
            max_stdout=max_stdout,
        )

    def remaining_time(self) -> float:
        """Seconds left before the Lambda deadline; ``math.inf`` outside Lambda."""
        return self._runtime.remaining_time()

    def path(self, name: str) -> Path:
        """A path for a new file in the job's directory (``ctx.path("out.m4a")``)."""
        output_key("", name)  # the same rules keep it inside the directory
        target = self.work_dir / "work" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
