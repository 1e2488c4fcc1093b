"""Streaming: the progress hub, upload snapshots and Server-Sent Events."""
