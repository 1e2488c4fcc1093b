"""Moved to :mod:`transflow.ingest.s3events`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
