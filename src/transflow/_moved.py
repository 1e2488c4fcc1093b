"""Old flat module paths, kept working for one release after the move into rooms."""

from __future__ import annotations

import importlib
import sys
import warnings

# Old path -> new home. Each old path is a one-line module calling :func:`alias`.
MOVED: dict[str, str] = {
    "transflow.model": "transflow._wire.model",
    "transflow.naming": "transflow._wire.naming",
    "transflow.keys": "transflow._wire.keys",
    "transflow.safenames": "transflow._wire.safenames",
    "transflow.messages": "transflow._wire.messages",
    "transflow.sqs_batch": "transflow._aws.sqs_batch",
    "transflow.metering": "transflow._aws.metering",
    "transflow.claimcheck": "transflow._aws.claimcheck",
    "transflow.poller": "transflow._aws.poller",
    "transflow.uploads": "transflow.ingest.uploads",
    "transflow.s3events": "transflow.ingest.s3events",
    "transflow.grouping": "transflow.ingest.grouping",
    "transflow.bridge": "transflow.ingest.bridge",
    "transflow.templates": "transflow.processing.templates",
    "transflow.context": "transflow.processing.context",
    "transflow.commands": "transflow.processing.external",
    "transflow.status": "transflow.processing.status",
    "transflow.webhooks": "transflow.processing.webhooks",
    "transflow.progress": "transflow.processing.progress",
    "transflow.processor": "transflow.processing.processor",
    "transflow.worker": "transflow.processing.worker",
    "transflow.hub": "transflow.streaming.hub",
    "transflow.snapshot": "transflow.streaming.snapshot",
    "transflow.sse": "transflow.streaming.sse",
    "transflow.provision": "transflow.ops.provision",
    "transflow.iam": "transflow.ops.iam",
    "transflow.sam": "transflow.ops.sam",
    "transflow.metrics": "transflow.ops.metrics",
    "transflow.dlq": "transflow.ops.dlq",
    "transflow.local": "transflow.cli.local",
}


def alias(old: str) -> None:
    """Make the module ``old`` the module ``new``, with a DeprecationWarning naming the new path.

    The alias is the same module object, so private names, monkeypatching and ``isinstance``
    behave exactly as with the new path.
    """
    new = MOVED[old]
    warnings.warn(
        f"{old} moved to {new}; import public names from transflow, or from {new}. "
        f"The old path goes away in the next release.",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
