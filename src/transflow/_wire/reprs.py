"""One ``__repr__`` for the attrs classes a Lambda handler loads at its cold start.

attrs writes and compiles a ``__repr__`` for every class it decorates, about 0.15 ms a class:
a sixth of the processor handler's cold import (issue 22). A class that says
``__repr__ = fields_repr`` gets the same text from this one function instead (attrs leaves a
class's own ``__repr__`` alone): ``Name(field=value, ...)`` over the fields whose ``repr`` is
not ``False``, a field's own ``repr=`` callable where it has one, ``NOTHING`` for an unset
``init=False`` field, and ``...`` for an instance already being shown higher up the same
call (a cycle). Slower to call than attrs' own, which matters to nobody: reprs are for logs
and debuggers.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

__all__ = ["fields_repr"]

_showing = threading.local()


def fields_repr(self: Any) -> str:
    """``self`` shown as attrs shows it: ``Name(a=1, b='x')``."""
    shown: set[int] | None = getattr(_showing, "ids", None)
    if shown is None:
        shown = _showing.ids = set()
    if id(self) in shown:
        return "..."
    shown.add(id(self))
    try:
        parts = []
        for field in type(self).__attrs_attrs__:
            if field.repr is False:
                continue
            value = (
                getattr(self, field.name)
                if field.init
                else getattr(self, field.name, attrs.NOTHING)
            )
            parts.append(
                f"{field.name}={value!r}"
                if field.repr is True
                else f"{field.name}={field.repr(value)}"
            )
        return f"{type(self).__qualname__.rsplit('>.', 1)[-1]}({', '.join(parts)})"
    finally:
        shown.discard(id(self))
