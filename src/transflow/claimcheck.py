"""Moved to :mod:`transflow._aws.claimcheck`; this path works until the next release."""

from transflow._moved import alias

alias(__name__)
