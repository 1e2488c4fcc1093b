"""JobInputs: each input is fetched once, when a step first takes it, and never before."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow._wire.model import S3ObjectRef
from transflow.processing.context import InputFile, JobInputs


def _inputs(count: int) -> tuple[JobInputs, list[int]]:
    fetched: list[int] = []

    def fetch(index: int) -> InputFile:
        fetched.append(index)
        return InputFile(Path(f"/in/{index}"), f"f{index}", "b", f"k{index}", index)

    refs = [S3ObjectRef("b", f"k{n}") for n in range(count)]
    return JobInputs(refs, fetch), fetched


def test_counting_fetches_nothing_and_taking_fetches_once() -> None:
    inputs, fetched = _inputs(3)
    assert len(inputs) == 3
    assert fetched == []
    assert inputs[-1].key == "k2"
    assert inputs[2].key == "k2"
    assert fetched == [2]
    assert inputs.opened() == (inputs[2],)
    assert [r.key for r in inputs.unopened()] == ["k0", "k1"]
    with pytest.raises(IndexError):
        inputs[3]


@given(st.integers(0, 6), st.lists(st.integers(-8, 8)))
def test_each_input_is_fetched_at_most_once_whatever_is_taken(count: int, taken: list[int]) -> None:
    inputs, fetched = _inputs(count)
    for index in taken:
        if -count <= index < count:
            assert inputs[index].size == index % count
        else:
            with pytest.raises(IndexError):
                inputs[index]
    assert sorted(fetched) == sorted(set(fetched))
    assert len(inputs.opened()) + len(inputs.unopened()) == count
    assert [f.size for f in inputs[:]] == list(range(count))
