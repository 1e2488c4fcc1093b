"""attrs validators for options: a value out of range is a :class:`~transflow.errors.ConfigError`
that names the class, the option, what it must be and what it was."""

from __future__ import annotations

from typing import Any

import attrs

from transflow.errors import ConfigError

__all__ = ["at_least", "between", "positive"]

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
