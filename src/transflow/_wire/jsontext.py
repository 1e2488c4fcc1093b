"""Reading JSON text that anyone may have written: one parser for message bodies, S3
metadata and configuration files.

:func:`json.loads` alone lets through values no other JSON reader accepts (``NaN``,
``Infinity``) and raises ``ValueError`` or ``RecursionError`` for inputs that are valid
JSON but unreasonable (a 5,000-digit number, 100,000 nested arrays). Here every one of
those is a :class:`JsonTextError` with a message that says what was wrong.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import json
import sys

__all__ = ["JsonTextError", "parse_json", "show", "type_name"]

_SHOWN_CHARS = 60


class JsonTextError(ValueError):
    """The text is not JSON transflow can read; the message says why."""


def _refuse_constant(name: str) -> float:
    raise JsonTextError(f"{name} is not JSON (write a number or null)")


def parse_json(text: str | bytes | bytearray) -> object:
    """The value of a JSON document; raises :class:`JsonTextError` for anything else.

    Bytes may be UTF-8, -16 or -32 (as :func:`json.loads` detects them). Numbers longer
    than Python's integer-conversion limit, nesting deeper than the recursion limit and
    the non-standard ``NaN``/``Infinity`` are refused.
    """
    if not isinstance(text, str | bytes | bytearray):
        raise JsonTextError(f"expected JSON text, got {type(text).__name__}")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except JsonTextError:
        raise
    except RecursionError as exc:
        raise JsonTextError("JSON nested too deeply") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonTextError(f"not valid JSON ({exc})") from exc
    except ValueError as exc:
        # int() refuses more digits than this: valid JSON, but no field can use such a number.
        limit = sys.get_int_max_str_digits()
        raise JsonTextError(f"a number has more than {limit} digits; no field takes one") from exc


def type_name(value: object) -> str:
    """What a decoded JSON value is, in JSON's words (``an object``, ``a number``, …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(value), type(value).__name__)


def show(value: object) -> str:
    """``repr(value)`` for an error message: cut to a readable length, and never raising
    (a huge integer has no repr past Python's digit limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"a {value.bit_length()}-bit integer" if isinstance(value, int) else "a value"
    if len(text) > _SHOWN_CHARS:
        return text[: _SHOWN_CHARS - 5] + "…" + text[-4:]
    return text
