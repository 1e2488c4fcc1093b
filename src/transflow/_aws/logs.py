"""Log lines that say which upload, attempt, step and trace they are about, and JSON lines
on request.

The processor sets the fields of the job it runs in a context variable
(:func:`log_context`); :class:`LogContextFilter` copies them onto every record logged in
that context, so the existing ``log.info(...)`` calls carry them without being rewritten.
:func:`configure_logging` installs a handler with that filter, writing JSON lines
(``json=True`` or ``TRANSFLOW_LOG_FORMAT=json``) or text. Nothing is configured at import.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json as jsonlib
import logging
import os
import sys
import types
from collections.abc import Iterator, Mapping
from typing import TextIO

__all__ = [
    "LOG_FIELDS",
    "JsonLogFormatter",
    "LogContextFilter",
    "configure_logging",
    "log_context",
    "log_fields",
]

LOG_FIELDS = ("upload_id", "template_id", "attempt", "step", "trace_id", "span_id")
"""The context fields a log line carries, in this order, when they are known."""

_NONE: Mapping[str, str | int] = types.MappingProxyType({})
_FIELDS: contextvars.ContextVar[Mapping[str, str | int]] = contextvars.ContextVar(
    "transflow_log_fields", default=_NONE
)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(transflow_context)s"


def log_fields() -> Mapping[str, str | int]:
    """The fields of the current context (empty outside a job)."""
    return _FIELDS.get()


@contextlib.contextmanager
def log_context(**fields: str | int | None) -> Iterator[None]:
    """Add ``fields`` (None: leave out) to every log line of this context until it exits."""
    merged = {**_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _FIELDS.set(merged)
    try:
        yield
    finally:
        _FIELDS.reset(token)


class LogContextFilter(logging.Filter):
    """Copies the context's fields onto each record (as attributes named as in
    :data:`LOG_FIELDS`, plus ``transflow_context``, a text suffix). Filters run in the
    thread that logs, where the context is; formatters may run elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _FIELDS.get()
        for name in LOG_FIELDS:
            if name in fields and not hasattr(record, name):
                setattr(record, name, fields[name])
        shown = " ".join(f"{n}={fields[n]}" for n in LOG_FIELDS if n in fields)
        record.transflow_context = f" [{shown}]" if shown else ""
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the context
    fields that are known, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return jsonlib.dumps(line, ensure_ascii=False, default=str)


def _json_requested(env: Mapping[str, str]) -> bool:
    return env.get("TRANSFLOW_LOG_FORMAT", "").strip().lower() == "json"


def configure_logging(
    *,
    json: bool | None = None,
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Log to ``stream`` (default stderr) with the upload id, template id, job attempt,
    step and trace id of the job each line is about.

    ``json=True`` writes one JSON object per line (for CloudWatch Logs Insights and other
    log stores); ``json=None`` reads ``TRANSFLOW_LOG_FORMAT`` (``json`` or ``text``).
    Replaces the handlers of ``logger`` (default: the root logger, so the host's own lines
    are formatted alike) and returns the one it installs. Call it once, at start-up.
    """
    use_json = _json_requested(os.environ) if json is None else json
    target = logging.getLogger() if logger is None else logger
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonLogFormatter() if use_json else logging.Formatter(_TEXT_FORMAT))
    for old in list(target.handlers):
        target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(level)
    return handler
