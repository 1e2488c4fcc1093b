"""Every command says what it does and every option what it means: ``--help`` is how a new
user learns the command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from transflow.cli.app import build_parser


def _parsers(
    parser: argparse.ArgumentParser, name: str = "transflow"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_command_has_a_description_and_every_option_a_help_text() -> None:
    missing = []
    for name, parser in _parsers(build_parser()):
        if not parser.description:
            missing.append(f"{name}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or not action.option_strings:
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings)}: no help")
    assert not missing, "\n".join(missing)


def test_an_option_with_a_default_says_it() -> None:
    unsaid = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, False, [], argparse.SUPPRESS):
                continue
            if "default" not in (action.help or "") and "%(default)" not in (action.help or ""):
                unsaid.append(f"{name} {'/'.join(action.option_strings)} (default {default})")
    assert not unsaid, "\n".join(unsaid)
