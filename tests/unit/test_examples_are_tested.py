"""Every file in examples/ is exercised by a test: users copy them, so they must work."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def example_modules(examples: Path) -> set[str]:
    return {path.stem for path in examples.glob("*.py") if path.stem != "__init__"}


def imported_examples(source: str) -> set[str]:
    """Example modules a Python file imports, or names as ``examples.x`` / ``examples/x.py``
    (tests that run an example in a subprocess or by its import string)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "examples":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("examples."):
            found.add(node.module.split(".")[1] if node.module else "")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("examples."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(re.findall(r"\bexamples[./]([A-Za-z_]\w*)", node.value))
    return found


def untested_examples(examples: Path, tests: Path) -> set[str]:
    """Examples no test reaches. A helper module (``_name``) counts as reached when an
    example a test reaches imports it."""
    reached: set[str] = set()
    for path in tests.rglob("*.py"):
        if path.resolve() != Path(__file__).resolve():
            reached |= imported_examples(path.read_text(encoding="utf-8"))
    modules = example_modules(examples)
    for name in sorted(reached & modules):
        reached |= imported_examples((examples / f"{name}.py").read_text(encoding="utf-8"))
    return modules - reached


def test_every_example_is_run_by_a_test() -> None:
    missing = untested_examples(ROOT / "examples", ROOT / "tests")
    assert not missing, (
        f"examples without a test: {sorted(missing)}; add a test that imports and runs them"
    )


def test_an_example_nobody_imports_is_reported(tmp_path: Path) -> None:
    examples, tests = tmp_path / "examples", tmp_path / "tests"
    examples.mkdir()
    tests.mkdir()
    for name in ("used", "_helper", "forgotten", "run_by_name", "__init__"):
        (examples / f"{name}.py").write_text("")
    (examples / "used.py").write_text("from examples._helper import thing\n")
    (tests / "test_a.py").write_text(
        "from examples import used\nARGS = ['python', '-m', 'examples.run_by_name']\n"
    )
    assert untested_examples(examples, tests) == {"forgotten"}
