"""``transflow worker --templates``: a bad target is one line naming what is wrong."""

from __future__ import annotations

import re

import pytest

from transflow.cli.app import main
from transflow.cli.worker import load_registry
from transflow.errors import ConfigError
from transflow.processing.templates import TemplateRegistry

registry = TemplateRegistry()


def make_registry() -> TemplateRegistry:
    return registry


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("json:dumps", "calling dumps() failed"),
        ("json:nothing", "has no attribute 'nothing'"),
        ("no_such_module_here:x", "cannot import no_such_module_here"),
        ("json:decoder", "is a module, not a TemplateRegistry"),
        ("json", "expected 'package.module:registry'"),
    ],
)
def test_a_bad_target_is_one_line(spec: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_registry(spec)
    assert main(["worker", "--templates", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert says in err


def test_a_registry_or_a_factory_of_one_is_accepted() -> None:
    assert load_registry(f"{__name__}:registry") is registry
    assert load_registry(f"{__name__}:make_registry") is registry
