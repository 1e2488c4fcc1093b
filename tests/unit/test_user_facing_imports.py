"""What users copy uses public names only: README.md, the code blocks of docs/*.md and the
examples import nothing from ``transflow._*`` (the private rooms move without notice; the
public API is ``from transflow import …``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_IMPORT = re.compile(r"^\s*(?:from|import)\s+(transflow[\w.]*)", re.MULTILINE)


def _private_imports(code: str) -> list[str]:
    return [module for module in _IMPORT.findall(code) if "._" in module]


def _code(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return text
    return "\n".join(block for block in _FENCE.findall(text))


def _sources() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*.py")),
    ]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_facing_code_imports_only_public_names(path: Path) -> None:
    found = _private_imports(_code(path))
    assert not found, f"{path.relative_to(ROOT)} imports private modules: {sorted(set(found))}"


def test_the_scan_sees_a_private_import_in_a_code_block(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text `transflow._aws` in prose is fine\n\n```python\nimport boto3\n"
        "from transflow._aws.sqs_batch import send_batch\n```\n",
        encoding="utf-8",
    )
    assert _private_imports(_code(doc)) == ["transflow._aws.sqs_batch"]
