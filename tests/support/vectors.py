"""The shared test vectors of tests/data (also read by other implementations of the wire)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parents[1] / "data"


def load_vector(name: str) -> Any:
    """A file of tests/data, decoded."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))
