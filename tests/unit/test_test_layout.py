"""Where test code lives: helpers in tests/support, tests importing helpers, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parents[1]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_tests_root_holds_only_the_harness() -> None:
    assert sorted(p.name for p in TESTS.glob("*.py")) == ["__init__.py", "conftest.py"]


def test_unit_tests_import_helpers_never_other_test_files() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            m
            for m in imported_modules(path)
            if m.startswith(("tests.unit", "tests.integration", "tests.e2e", "tests.conftest"))
        )
        for path in (TESTS / "unit").glob("*.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_test_file_imports_another() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            m
            for m in imported_modules(path)
            if m.rpartition(".")[2].startswith("test_") or m == "tests.conftest"
        )
        for path in TESTS.rglob("*.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_fuzz_modules_have_one_name_per_layer() -> None:
    names = [p.name for p in TESTS.rglob("test_fuzz*.py")]
    assert len(names) == len(set(names)), sorted(names)
