"""Checks for the options of transflow's classes, as attrs validators raising ``ConfigError``.

Every option is checked when the object is made, so a wrong value fails at deploy time
with a message naming the class, the option and what it accepts, not later inside a batch
with a bare ``ValueError``. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from transflow.errors import ConfigError

__all__ = ["bounded_int", "callable_", "instance_of", "non_empty_text", "optional", "seconds"]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _refuse(instance: object, attribute: attrs.Attribute[Any], value: object, rule: str) -> None:
    raise ConfigError(
        f"{type(instance).__name__}({attribute.name}={value!r}) is refused: {attribute.name} "
        f"must be {rule}"
    )


def seconds(*, minimum: float = 0.0, strict: bool = False) -> Validator:
    """A finite number of seconds, at least ``minimum`` (above it when ``strict``)."""
    rule = f"a finite number of seconds {'>' if strict else '>='} {minimum:g}"

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < minimum
            or (strict and value == minimum)
        ):
            _refuse(instance, attribute, value, rule)

    return check


def bounded_int(minimum: int, maximum: int | None = None) -> Validator:
    """An int from ``minimum`` to ``maximum`` (inclusive; no upper bound when None)."""
    rule = f"an integer from {minimum} to {maximum}" if maximum else f"an integer >= {minimum}"

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            _refuse(instance, attribute, value, rule)

    return check


def non_empty_text(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        _refuse(instance, attribute, value, "a non-empty string")


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
            _refuse(instance, attribute, value, f"a {kind.__name__}")

    return check


def callable_(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A callable."""
    if not callable(value):
        _refuse(instance, attribute, value, "callable")
