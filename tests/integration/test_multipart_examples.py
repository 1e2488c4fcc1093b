"""The multipart examples run as users run them: a ticket, parts PUT, the upload completed."""

from __future__ import annotations

import pytest

from examples import multipart_flask, multipart_starlette

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "example", [multipart_flask, multipart_starlette], ids=["flask", "starlette"]
)
def test_example_uploads_a_big_file_in_parts(example: object) -> None:
    done = example.main()  # type: ignore[attr-defined]
    assert done["size"] == 11 * MIB
    assert done["key"].startswith("uploads/main/")
    assert done["key"].endswith("/film.mp4")
