"""Hypothesis strategies for hostile input: arbitrary JSON, mutated wire objects, broken text.

Shared by the pure fuzz tests (tests/unit/test_fuzz_pure_entry_points.py) and the ones on the
moto server (tests/integration/test_fuzz_aws_entry_points.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

HUGE = "9" * 5000
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**30, 2**53, -1, 0, 2**63])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["\r\n", "²", "upload:main:*", "a:b:c", "\x00", "\ud800", "..", "${x}"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def mutated(good: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A good wire object with some keys replaced by anything (or removed)."""
    keys = st.sampled_from([*good, "extra", "claimCheck", "user", "fields"])
    return st.dictionaries(keys, json_values | st.just(None), max_size=4).map(
        lambda changes: {
            k: v for k, v in {**good, **changes}.items() if not (v is None and k in changes)
        }
    )


def texts_for(good: dict[str, Any]) -> st.SearchStrategy[str]:
    """Message bodies: JSON of anything, mutated good objects, broken and huge text."""
    as_json = (json_values | mutated(good)).map(lambda v: json.dumps(v, allow_nan=False))
    return (
        as_json
        | st.text(max_size=60)
        | st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
        | st.sampled_from(
            [
                "",
                "[" * 50_000,
                '{"seq": ' + HUGE + "}",
                json.dumps(good)[:-1] + ', "n": 1e400}',
                json.dumps(good)[:-1] + ', "seq": ' + HUGE + "}",
                "\ufeff" + json.dumps(good),
                "NaN",
            ]
        )
    )
