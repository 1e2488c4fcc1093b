"""Relative links between the docs point at files and headings that exist, and the docs
index lists every page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def broken_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{path.name}: {target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{path.name}: {target} (no such heading)")
    return broken


def test_links_in_the_docs_resolve() -> None:
    pages = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
    problems = [problem for page in pages for problem in broken_links(page)]
    assert problems == []


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [bad](#nope) [gone](b.md)\n")
    assert broken_links(tmp_path / "a.md") == [
        "a.md: #nope (no such heading)",
        "a.md: b.md (no such file)",
    ]


def test_the_package_description_stands_on_its_own() -> None:
    # PACKAGE.md is the wheel's long description: read on an index, outside the repository.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'readme = "PACKAGE.md"' in pyproject
    text = (ROOT / "PACKAGE.md").read_text(encoding="utf-8")
    relative = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert relative == []
    assert "make " not in text
