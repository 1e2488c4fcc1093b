"""Moved to :mod:`transflow._wire.safenames`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
