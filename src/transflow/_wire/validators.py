"""attrs validators for options: a value out of range is a :class:`~transflow.errors.ConfigError`
that names the class, the option, what it must be and what it was.

Every option is checked when the object is made, so a wrong value fails at deploy time, not
later inside a batch with a bare ``ValueError``. Pure."""

from __future__ import annotations

import math
from typing import Any

import attrs

from transflow.errors import ConfigError

__all__ = [
    "at_least",
    "between",
    "bounded_int",
    "callable_",
    "instance_of",
    "non_empty_text",
    "optional",
    "positive",
    "seconds",
]

Validator = Any  # attrs' validator protocol: (instance, attribute, value) -> None


def _fail(instance: object, attribute: attrs.Attribute[Any], must: str, value: object) -> None:
    raise ConfigError(f"{type(instance).__name__} {attribute.name} must be {must}, not {value!r}")


def at_least(minimum: float) -> Validator:
    """The value is at least ``minimum`` (None passes: the option is unset)."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and value < minimum:
            _fail(instance, attribute, f"at least {minimum}", value)

    return check


def positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """The value is above 0 (None passes: the option is unset)."""
    if value is not None and value <= 0:
        _fail(instance, attribute, "positive", value)


def between(low: float, high: float, why: str = "") -> Validator:
    """The value is from ``low`` to ``high`` inclusive; ``why`` explains the bounds."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and not low <= value <= high:
            _fail(instance, attribute, f"from {low} to {high}{why}", value)

    return check


def seconds(*, minimum: float = 0.0, strict: bool = False) -> Validator:
    """A finite number of seconds, at least ``minimum`` (above it when ``strict``)."""
    must = f"a finite number of seconds {'>' if strict else '>='} {minimum:g}"

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < minimum
            or (strict and value == minimum)
        ):
            _fail(instance, attribute, must, value)

    return check


def bounded_int(minimum: int, maximum: int | None = None) -> Validator:
    """An int from ``minimum`` to ``maximum`` (inclusive; no upper bound when None)."""
    must = f"an integer from {minimum} to {maximum}" if maximum else f"an integer >= {minimum}"

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            _fail(instance, attribute, must, value)

    return check


def non_empty_text(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        _fail(instance, attribute, "a non-empty string", value)


def optional(validator: Validator) -> Validator:
    """``validator``, or None."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


def instance_of(kind: type) -> Validator:
    """An instance of ``kind``."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, kind):
            _fail(instance, attribute, f"a {kind.__name__}", value)

    return check


def callable_(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A callable."""
    if not callable(value):
        _fail(instance, attribute, "callable", value)
