"""Moved to :mod:`transflow.ops.provision`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
