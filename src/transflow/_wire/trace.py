"""The trace context an upload carries from ``create_upload`` to the browser: W3C Trace
Context (``traceparent``, optionally ``tracestate``), and AWS's ``AWSTraceHeader``.

The context travels in the upload's S3 metadata, the processing job and every progress
event, so one trace id joins the bridge, the job, its steps and the events a browser sees.
Pure: no AWS, no I/O, no OpenTelemetry (:mod:`transflow._aws.tracing` makes spans).

Spec: https://www.w3.org/TR/trace-context/
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow.errors import TraceContextError

__all__ = [
    "MAX_TRACESTATE_CHARS",
    "TraceContext",
    "from_aws_trace_header",
    "parse_trace",
]

MAX_TRACESTATE_CHARS = 512
"""The longest ``tracestate`` W3C asks carriers to pass on (32 members, at least 512
characters): a longer one is not carried."""

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# Compiled by re on first use: only a job that carries a tracestate, or a message with an
# X-Ray header, reads them (issue 22's cold start).
_TRACESTATE_MEMBER = r"[a-z0-9][_0-9a-z\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,256}"
_AWS_ROOT = r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})"
_AWS_PARENT = r"[0-9a-fA-F]{16}"
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _traceparent_problem(value: str) -> str | None:
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return (
            f"traceparent {value[:80]!r} is not '00-<32 hex trace id>-<16 hex span id>-<2 hex "
            "flags>' in lower case"
        )
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return f"traceparent {value[:80]!r} has an invalid version"
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return f"traceparent {value[:80]!r} has an all-zero trace or span id"
    return None


def _tracestate_problem(value: str) -> str | None:
    if len(value) > MAX_TRACESTATE_CHARS:
        return f"tracestate is {len(value)} characters, over {MAX_TRACESTATE_CHARS}"
    members = [m.strip() for m in value.split(",") if m.strip()]
    bad = [m for m in members if not re.fullmatch(_TRACESTATE_MEMBER, m)]
    if bad or len(members) > 32:
        return f"tracestate {value[:80]!r} is not a list of up to 32 key=value members"
    return None


def _check_traceparent(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str):
        raise TraceContextError(f"traceparent must be a string, not {type(value).__name__}")
    problem = _traceparent_problem(value)
    if problem is not None:
        raise TraceContextError(
            problem + "; pass the incoming request's header as it came, or omit it"
        )


def _check_tracestate(_instance: object, _attribute: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TraceContextError(f"tracestate must be a string, not {type(value).__name__}")
    problem = _tracestate_problem(value)
    if problem is not None:
        raise TraceContextError(problem + "; pass the incoming header as it came, or omit it")


@attrs.frozen
class TraceContext:
    """A W3C trace context: ``traceparent`` and, optionally, ``tracestate``.

    Build one from a request's headers (:meth:`from_headers`), from a ``traceparent``
    string, or start a new trace (:meth:`new`). Raises :class:`~transflow.TraceContextError`
    when either value breaks the W3C format.
    """

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    traceparent: str = attrs.field(validator=_check_traceparent)
    tracestate: str | None = attrs.field(default=None, validator=_check_tracestate)

    @classmethod
    def new(cls) -> TraceContext:
        """A new trace, sampled, with random ids (:mod:`secrets`)."""
        return cls(f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> TraceContext | None:
        """The context of an incoming HTTP request (``traceparent`` and ``tracestate``,
        any case), or None when it has no valid one: W3C says a receiver then starts a new
        trace rather than refusing the request."""
        lowered = {str(k).lower(): v for k, v in headers.items()}
        parent = lowered.get("traceparent")
        if not isinstance(parent, str) or _traceparent_problem(parent.strip()) is not None:
            return None
        state = lowered.get("tracestate")
        if not isinstance(state, str) or _tracestate_problem(state) is not None:
            state = None
        return cls(parent.strip(), state or None)

    @property
    def trace_id(self) -> str:
        """The 32 hex digits every span of the trace shares."""
        return self.traceparent[3:35]

    @property
    def span_id(self) -> str:
        """The 16 hex digits of the span that is the parent of the next one."""
        return self.traceparent[36:52]

    @property
    def sampled(self) -> bool:
        """Whether the caller records this trace (the ``sampled`` flag)."""
        return bool(int(self.traceparent[53:55], 16) & 1)

    def child(self) -> TraceContext:
        """The same trace with a new span id: the context a new hop carries on."""
        flags = self.traceparent[53:55]
        return TraceContext(f"00-{self.trace_id}-{secrets.token_hex(8)}-{flags}", self.tracestate)


def parse_trace(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The context a message carries, or None when it carries none or a malformed one: a
    trace must never fail the work it follows (callers log what they ignore)."""
    if traceparent is None or _traceparent_problem(traceparent) is not None:
        return None
    if tracestate is not None and _tracestate_problem(tracestate) is not None:
        tracestate = None
    return TraceContext(traceparent, tracestate)


def from_aws_trace_header(header: str | None) -> TraceContext | None:
    """The W3C form of an X-Ray ``AWSTraceHeader`` (``Root=1-<8 hex>-<24 hex>;Parent=<16
    hex>;Sampled=1``): X-Ray's trace id is the W3C one with its ``1-`` and dashes removed.
    None when the header is absent, has no parent, or is malformed."""
    if not header:
        return None
    parts = dict(p.strip().partition("=")[::2] for p in header.split(";") if "=" in p)
    root = re.fullmatch(_AWS_ROOT, parts.get("Root", "").strip())
    parent = parts.get("Parent", "").strip()
    if root is None or not re.fullmatch(_AWS_PARENT, parent):
        return None
    trace_id = (root.group(1) + root.group(2)).lower()
    flags = "01" if parts.get("Sampled", "").strip() == "1" else "00"
    return parse_trace(f"00-{trace_id}-{parent.lower()}-{flags}")
