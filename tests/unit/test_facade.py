"""The facade, ``transflow/__init__.py``: one list of public names, each saying ``transflow``."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import transflow
from transflow import errors

INIT = Path(transflow.__file__)


def type_checking_imports() -> dict[str, str]:
    """Name -> module of the ``if TYPE_CHECKING`` block's ``from m import X as X`` lines."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    found: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            # Spelled `X as X`: without the alias, mypy --strict does not re-export the name.
            assert alias.asname == alias.name, ast.unparse(node)
            found[alias.name] = f"{node.module}.{alias.name}"
    return found


def test_the_type_checking_block_says_what_homes_says() -> None:
    written = type_checking_imports()
    modules = {name: f"{home}.{name}" for name, home in transflow._HOMES.items()}
    modules |= {
        name: f"{home.rpartition('.')[0]}.{name}" for name, home in transflow._MODULES.items()
    }
    assert written == modules


def test_all_is_the_version_the_errors_and_the_lazy_names() -> None:
    assert transflow.__all__ == sorted(["__version__", *errors.__all__, *transflow._HOMES])
    assert len(set(transflow.__all__)) == len(transflow.__all__)


def test_a_public_name_says_it_is_transflows_and_still_pickles() -> None:
    job = transflow.ProcessingJob.from_dict(
        {
            "uploadId": "u1",
            "templateId": "t",
            "branch": "main",
            "objects": [{"bucket": "b", "key": "uploads/main/u1/a.wav"}],
        }
    )
    assert type(job).__module__ == "transflow"
    assert repr(transflow.ProcessingJob) == "<class 'transflow.ProcessingJob'>"
    assert transflow.create_upload.__module__ == "transflow"
    assert pickle.loads(pickle.dumps(job)) == job
    assert (
        pickle.loads(pickle.dumps(transflow.ProgressType.OUTPUT)) is transflow.ProgressType.OUTPUT
    )
    assert repr(job).startswith("ProcessingJob(upload_id='u1'")


def test_a_public_name_resolved_first_still_structures_and_unpickles_in_a_new_process() -> None:
    # cattrs resolves an attrs class's string annotations through __module__: the facade
    # resolves them in the home module before it changes __module__.
    code = """
import pickle, sys
import cattrs
from transflow import AssemblyStatus
record = cattrs.Converter().structure(
    {"assembly_id": "a", "upload_id": "u", "template_id": "t", "branch": "main", "user": None,
     "job_fingerprint": "f", "attempt": 1, "execution_start": "now",
     "uploads": [{"name": "n", "bucket": "b", "key": "k", "size": 1}]},
    AssemblyStatus,
)
sys.stdout.buffer.write(pickle.dumps(record))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout
    record = pickle.loads(out)
    assert type(record) is transflow.AssemblyStatus
    assert record.uploads[0].key == "k"
