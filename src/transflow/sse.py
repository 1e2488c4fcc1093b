"""Moved to :mod:`transflow.streaming.sse`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
