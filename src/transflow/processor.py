"""Moved to :mod:`transflow.processing.processor`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
