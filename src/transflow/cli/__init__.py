"""The ``transflow`` command. Not imported by ``import transflow``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``transflow`` command (:func:`transflow.cli.app.main`)."""
    # Imported here, not at package import: a Lambda that borrows a helper from a submodule
    # (``transflow.cli.demo.samples``) must not load the whole command and the ops room.
    from transflow.cli.app import main as run  # noqa: PLC0415

    return run(argv)
