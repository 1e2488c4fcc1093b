"""One ``__repr__``, ``__eq__`` and ``__hash__`` for the attrs classes a Lambda handler loads.

attrs writes and compiles these methods for every class it decorates: about 0.15 ms a class
for ``__repr__`` and 0.1 ms for ``__eq__`` and ``__hash__``, a quarter of the processor
handler's cold import (issue 22). A class that says ``__repr__ = fields_repr`` (and
``__eq__ = fields_eq``, and for a frozen one ``__hash__ = fields_hash``) gets the same
behaviour from these shared functions instead: attrs leaves a class's own methods alone.

- ``fields_repr``: ``Name(field=value, ...)`` over the fields whose ``repr`` is not
  ``False``, a field's own ``repr=`` callable where it has one, ``NOTHING`` for an unset
  ``init=False`` field, ``...`` for an instance already being shown higher up the same call
  (a cycle).
- ``fields_eq``: equal when of the very same class and the tuples of the fields with
  ``eq=True`` (through their ``eq_key``) are equal; ``NotImplemented`` for another class.
- ``fields_hash``: the hash of the class and the fields that take part in the hash (those
  with ``eq``, unless ``hash=False``), so equal instances hash alike. A mutable class that
  defines ``__eq__`` without ``__hash__`` is unhashable, as attrs makes it.

Slower to call than attrs' compiled methods (a few hundred nanoseconds), which no path here
notices; the classes' tests compare them with attrs' own (tests/unit/test_dunders.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["fields_eq", "fields_hash", "fields_repr"]

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


_Fields = tuple[tuple[str, Callable[[Any], Any] | None], ...]
# Per class, made on its first comparison or hash: a class's fields never change.
_eq_fields: dict[type, _Fields] = {}
_hash_fields: dict[type, _Fields] = {}


def _keyed(fields: list[Any]) -> _Fields:
    return tuple((f.name, f.eq_key) for f in fields)


def fields_eq(self: Any, other: object) -> bool:
    """attrs' equality: the same class, then ``==`` field by field (``eq=False`` fields
    aside, through ``eq_key``), the first false result or the last."""
    cls: Any = self.__class__
    if other.__class__ is not cls:
        other_class: bool = NotImplemented  # typed as bool, as object.__eq__ says it returns
        return other_class
    fields = _eq_fields.get(cls)
    if fields is None:
        fields = _eq_fields[cls] = _keyed([f for f in self.__attrs_attrs__ if f.eq])
    result: bool = True
    for name, key in fields:
        mine, theirs = getattr(self, name), getattr(other, name)
        result = mine == theirs if key is None else key(mine) == key(theirs)
        if not result:
            return result
    return result


def fields_hash(self: Any) -> int:
    """A hash consistent with :func:`fields_eq`: the class and the fields that take part
    (``hash=True``, or ``eq`` without ``hash=False``), through ``eq_key``."""
    cls: Any = self.__class__
    fields = _hash_fields.get(cls)
    if fields is None:
        hashed = [f for f in cls.__attrs_attrs__ if f.hash is True or (f.hash is None and f.eq)]
        fields = _hash_fields[cls] = _keyed(hashed)
    return hash(
        (
            cls,
            *(getattr(self, n) if key is None else key(getattr(self, n)) for n, key in fields),
        )
    )
