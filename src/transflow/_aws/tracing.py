"""OpenTelemetry spans for the bridge, the job, its steps and progress publishing, when the
host uses OpenTelemetry (the optional ``transflow[otel]`` extra).

Nothing here imports OpenTelemetry at import time, and nothing imports it at all unless the
host already did (it configured a tracer provider, so ``opentelemetry.trace`` is loaded) or
``TRANSFLOW_OTEL=on`` asks for it; ``TRANSFLOW_OTEL=off`` turns spans off. Without spans the
carried :class:`~transflow._wire.trace.TraceContext` passes through unchanged, so logs and
events still share the upload's trace id. The variable is read at each span, never at import.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import attrs

from transflow._wire.dunders import fields_repr
from transflow._wire.trace import TraceContext, parse_trace

__all__ = ["Span", "current_trace", "span", "start_span"]

_API = "opentelemetry.trace"
_TRACER = "transflow"


def _otel() -> ModuleType | None:
    """``opentelemetry.trace`` when spans are on, else None (never an import otherwise)."""
    choice = os.environ.get("TRANSFLOW_OTEL", "").strip().lower()
    if choice in ("off", "0", "false", "none"):
        return None
    loaded = sys.modules.get(_API)
    if loaded is not None:
        return loaded
    if choice not in ("on", "1", "true"):
        return None
    try:
        return importlib.import_module(_API)
    except ImportError:
        return None


def _as_trace(span_context: Any, tracestate: str | None) -> TraceContext | None:
    if not span_context.is_valid:
        return None
    header = span_context.trace_state.to_header() if span_context.trace_state else ""
    return parse_trace(
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}",
        header or tracestate,
    )


def _span_context(otel: ModuleType, trace: TraceContext) -> Any:
    state = otel.TraceState.from_header([trace.tracestate]) if trace.tracestate else None
    return otel.SpanContext(
        trace_id=int(trace.trace_id, 16),
        span_id=int(trace.span_id, 16),
        is_remote=True,
        trace_flags=otel.TraceFlags(int(trace.traceparent[53:55], 16)),
        trace_state=state,
    )


def current_trace() -> TraceContext | None:
    """The host's current OpenTelemetry span as a trace context, when there is one."""
    otel = _otel()
    if otel is None:
        return None
    return _as_trace(otel.get_current_span().get_span_context(), None)


@attrs.define(eq=False)
class Span:
    """A started span (or none, when spans are off). ``context`` is the trace context the
    next hop carries: this span's when it records, else the parent's, unchanged."""

    __repr__ = fields_repr

    context: TraceContext | None
    _span: Any = attrs.field(default=None, alias="_span")

    def set(self, name: str, value: str | int | float | bool) -> None:
        """Set an attribute on the span (no-op when spans are off)."""
        if self._span is not None:
            self._span.set_attribute(name, value)

    def end(self, error: BaseException | str | None = None) -> None:
        """End the span, marked failed when ``error`` (an exception or what went wrong) is
        given."""
        if self._span is None:
            return
        if error is not None:
            otel = sys.modules[_API]
            if isinstance(error, BaseException):
                self._span.record_exception(error)
            text = error if isinstance(error, str) else type(error).__name__
            self._span.set_status(otel.Status(otel.StatusCode.ERROR, text))
        self._span.end()
        self._span = None


def start_span(
    name: str,
    *,
    parent: TraceContext | None,
    kind: str = "INTERNAL",
    links: Sequence[TraceContext] = (),
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Span:
    """Start a span under ``parent`` (the carried context; None: the host's current span or
    a new trace), linked to ``links``; end it with :meth:`Span.end`. Never raises: a span
    must not fail the work it measures."""
    otel = _otel()
    if otel is None:
        return Span(parent)
    try:
        context = (
            None
            if parent is None
            else otel.set_span_in_context(otel.NonRecordingSpan(_span_context(otel, parent)))
        )
        started = otel.get_tracer(_TRACER).start_span(
            name,
            context=context,
            kind=getattr(otel.SpanKind, kind),
            links=[otel.Link(_span_context(otel, link)) for link in links],
            attributes=dict(attributes or {}),
        )
    except Exception:
        return Span(parent)
    made = _as_trace(started.get_span_context(), parent.tracestate if parent else None)
    return Span(made or parent, started)


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: TraceContext | None,
    kind: str = "INTERNAL",
    links: Sequence[TraceContext] = (),
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """:func:`start_span` as a context manager; an exception leaving it marks the span
    failed. While it is open the span is OpenTelemetry's current one, so the host's own
    instrumentation (botocore, HTTP) nests under it."""
    started = start_span(name, parent=parent, kind=kind, links=links, attributes=attributes)
    error: BaseException | None = None
    token: object = None
    otel = sys.modules.get(_API) if started._span is not None else None
    if otel is not None:
        token = importlib.import_module("opentelemetry.context").attach(
            otel.set_span_in_context(started._span)
        )
    try:
        yield started
    except BaseException as exc:
        error = exc
        raise
    finally:
        if token is not None:
            importlib.import_module("opentelemetry.context").detach(token)
        started.end(error)
