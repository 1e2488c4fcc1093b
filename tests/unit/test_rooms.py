"""The package's rooms: who may import whom, who may import boto3, and what a Lambda loads.

docs/architecture.md shows the same table; change both together.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "transflow"

# Room -> the transflow rooms its modules may import at run time (``if TYPE_CHECKING`` aside).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "_version": frozenset(),
    "config": frozenset({"_wire", "errors"}),
    "_wire": frozenset({"_wire", "errors"}),
    "_aws": frozenset({"_aws", "_wire", "errors"}),
    "ingest": frozenset({"ingest", "_aws", "_wire", "errors", "config"}),
    "processing": frozenset({"processing", "_aws", "_wire", "errors", "_version"}),
    "streaming": frozenset({"streaming", "processing", "_aws", "_wire", "errors", "_version"}),
    "ops": frozenset(
        {"ops", "processing", "ingest", "_aws", "_wire", "errors", "config", "_version"}
    ),
    "web": frozenset({"web", "errors"}),
}
# Rooms whose modules may import botocore (exceptions, client Config); boto3 itself (making
# clients) is the host's job, and the CLI's.
MAY_IMPORT_BOTOCORE = frozenset({"_aws", "ingest", "processing", "streaming", "ops", "cli"})
MAY_IMPORT_BOTO3 = frozenset({"cli"})


def room_of(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0].removesuffix(".py")


def runtime_imports(tree: ast.AST) -> set[str]:
    """Dotted names a module imports at run time, ``if TYPE_CHECKING`` blocks skipped."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        else:
            found |= runtime_imports(node)
    return found


def room_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name not in {"__main__.py", "__init__.py"})


@pytest.mark.parametrize("path", room_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_rooms_import_only_what_they_may(path: Path) -> None:
    room = room_of(path)
    imported = runtime_imports(ast.parse(path.read_text(encoding="utf-8")))
    if room != "cli":
        rooms = {m.split(".")[1] for m in imported if m.startswith("transflow.")}
        assert rooms <= MAY_IMPORT[room], f"{room} imports {sorted(rooms - MAY_IMPORT[room])}"
        assert "transflow" not in imported, "import from a room, not from the facade"
    tops = {m.split(".")[0] for m in imported}
    if "boto3" in tops:
        assert room in MAY_IMPORT_BOTO3, f"{room} makes clients; the host passes them"
    if "botocore" in tops:
        assert room in MAY_IMPORT_BOTOCORE


def loaded_after(statement: str) -> set[str]:
    code = (
        f"import sys, json\n{statement}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('transflow'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def test_import_transflow_loads_only_the_facade_and_errors() -> None:
    assert loaded_after("import transflow") == {
        "transflow",
        "transflow._version",
        "transflow.errors",
    }


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("from transflow import GroupingBridge", ("processing", "streaming", "ops", "cli")),
        ("from transflow import JobProcessor", ("ingest", "streaming", "ops", "cli")),
        ("from transflow import ProgressHub", ("ingest", "ops", "cli")),
        ("from transflow import create_upload", ("processing", "streaming", "ops", "cli")),
    ],
)
def test_a_handler_loads_only_its_rooms(statement: str, forbidden: tuple[str, ...]) -> None:
    loaded = loaded_after(statement)
    rooms = {name.split(".")[1] for name in loaded if name.count(".") >= 1}
    assert not rooms & set(forbidden), sorted(rooms & set(forbidden))


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        # The recovery Lambda (examples/lambda_recovery.py): no template or policy writers.
        (
            "from transflow.ops.provision import resolve_progress_destination, resolve_queue_urls\n"
            "from transflow.ops.recovery import sweep_stale_uploads\n"
            "from transflow.ops.announce import announce",
            {"transflow.ops.sam", "transflow.ops.iam", "transflow.ops._yaml"},
        ),
        # The bridge reads upload metadata; it never signs uploads.
        ("from transflow import GroupingBridge", {"transflow.ingest.uploads"}),
        ("from transflow.ops.recovery import sweep_stale_uploads", {"transflow.ingest.uploads"}),
    ],
)
def test_a_handler_loads_no_module_it_does_not_use(statement: str, forbidden: set[str]) -> None:
    loaded = loaded_after(statement)
    assert not loaded & forbidden, sorted(loaded & forbidden)


def test_the_facade_lists_every_public_name_once() -> None:
    import transflow

    assert len(set(transflow.__all__)) == len(transflow.__all__)
    for name in transflow.__all__:
        assert getattr(transflow, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        transflow.nope  # noqa: B018


def test_the_architecture_tree_lists_every_module() -> None:
    """docs/architecture.md draws the tree; a module it does not name is a room nobody sees."""
    tree = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(SRC))
        for path in room_modules()
        if path.parent.name != "demo"
        and path.name != "_version.py"
        and f"── {path.name}" not in tree
    ]
    assert not missing, f"add to docs/architecture.md's tree: {missing}"


def test_importing_any_module_installs_no_process_hook() -> None:
    # CONTRIBUTING.md: nothing runs at import. A hook installed at import changes how every
    # process that merely imports transflow forks and exits; the hub installs its own on
    # its first start.
    code = """
import atexit, importlib, os, pkgutil, sys
hooks = []
def record(*args, **kwargs):
    hooks.extend(f for f in [*args, *kwargs.values()] if callable(f))
    return args[0] if args else None
atexit.register = record
os.register_at_fork = record
import transflow
for info in pkgutil.walk_packages(transflow.__path__, prefix="transflow."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(sorted(f"{f.__module__}.{f.__qualname__}" for f in hooks if "transflow" in str(f.__module__)))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
