"""Talking to AWS: batch calls that lose nothing, retry policy, claim checks, request metering."""
