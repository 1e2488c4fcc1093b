"""Moved to :mod:`transflow.ingest.bridge`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
