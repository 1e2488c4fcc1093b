"""docs/api.md is generated from the docstrings and must not go stale."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import transflow

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_up_to_date() -> None:
    generated = load_generator().render()
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == generated, (
        "docs/api.md is stale: run `make docs` (python docs/gen_api.py) and commit the result"
    )


def test_every_public_name_of_the_package_is_documented() -> None:
    missing: list[str] = []
    text = load_generator().render(missing)
    for name in transflow.__all__:
        value = getattr(transflow, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            # Documented under its own heading, with a docstring.
            assert f"\n### {name}\n" in text, name
            assert f"{value.__module__}.{name}" not in missing, f"{name} has no docstring"
        else:
            assert f"| `{name}` |" in text, name


def test_the_generator_turns_rest_markup_into_markdown() -> None:
    generator = load_generator()
    text = generator.markdown(
        """Summary with :class:`~transflow.streaming.hub.ProgressHub` and ``code``.

        Indented second paragraph::

            example()
        """
    )
    assert text.splitlines()[0] == "Summary with `ProgressHub` and `code`."
    assert "Indented second paragraph:\n\n    example()" in text
