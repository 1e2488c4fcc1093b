"""The ``transflow`` command. Not imported by ``import transflow``."""

from transflow.cli.app import main

__all__ = ["main"]
