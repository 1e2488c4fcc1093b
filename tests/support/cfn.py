"""cfn-lint on a generated template, in the regions the templates are checked for."""

from __future__ import annotations

from cfnlint.api import lint


def lint_errors(text: str) -> list[str]:
    """What cfn-lint finds wrong with the template ``text`` (empty: nothing)."""
    return [str(match) for match in lint(text, regions=["us-east-1", "eu-west-1"])]
