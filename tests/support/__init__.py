"""Helpers the tests share: fault injection, pipeline set-up, streaming clients, strategies."""
