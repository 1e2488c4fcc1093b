"""What the three FIFO queues of a project and branch should look like, and how what an
endpoint reports differs from it: pure decisions, no I/O (:mod:`transflow.ops.provision`
does the creating and correcting)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from transflow.config import TransflowConfig
from transflow.errors import ProvisionError

__all__ = [
    "MAX_RETENTION_SEC",
    "AttributeChange",
    "check_fifo",
    "desired_attributes",
    "desired_tags",
    "diff_attributes",
    "sibling_arn",
    "tag_changes",
    "visibility_warning",
]

MAX_RETENTION_SEC = 14 * 24 * 3600
"""SQS's longest retention, which the dead-letter queue always gets: a FIFO message's age
restarts when it moves there, and a failed job should wait as long as SQS allows."""

MANAGED_BY = "transflow"
VISIBILITY_FACTOR = 6
"""AWS's guidance: a queue's visibility timeout at least six times its function's timeout."""

_JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "RedriveAllowPolicy", "Policy"})


@attrs.frozen
class AttributeChange:
    """One attribute (or ``tag:{key}``) of one queue that :func:`ensure_queues` set.
    ``before`` is None when the queue did not report it."""

    queue: str
    attribute: str
    before: str | None
    after: str


def sibling_arn(arn: str, name: str) -> str:
    """The ARN of queue ``name`` in the same partition, region and account as ``arn``."""
    return f"{arn.rsplit(':', 1)[0]}:{name}"


def desired_attributes(
    config: TransflowConfig, *, dlq_arn: str, processing_arn: str
) -> dict[str, dict[str, str]]:
    """The attributes each queue (by role) must have, as SQS spells them.

    Attributes not listed are left as the operator set them (the DLQ's and the progress
    queue's visibility timeout, for example)."""
    sqs = config.sqs
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    size = {"MaximumMessageSize": str(sqs.max_message_bytes)}
    return {
        "dlq": {
            **fifo,
            **size,
            "MessageRetentionPeriod": str(MAX_RETENTION_SEC),
            "RedriveAllowPolicy": _dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [processing_arn]}
            ),
        },
        "processing": {
            **fifo,
            **size,
            "MessageRetentionPeriod": str(sqs.retention_sec),
            "VisibilityTimeout": str(sqs.visibility_timeout_sec),
            "RedrivePolicy": _dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": sqs.max_receive_count}
            ),
        },
        "progress": {
            **fifo,
            **size,
            "MessageRetentionPeriod": str(sqs.retention_sec),
        },
    }


def desired_tags(config: TransflowConfig) -> dict[str, str]:
    """The tags every queue of the project and branch carries."""
    return {"project": config.project, "branch": config.branch, "managed-by": MANAGED_BY}


def diff_attributes(
    queue: str, desired: Mapping[str, str], actual: Mapping[str, str]
) -> tuple[AttributeChange, ...]:
    """The attributes of ``desired`` that ``actual`` does not match. JSON policies compare by
    meaning (key order, spacing and ``3`` versus ``"3"`` do not count); ``FifoQueue`` is left
    out because SQS cannot change it (see :func:`check_fifo`)."""
    changes = []
    for name, want in desired.items():
        if name == "FifoQueue":
            continue
        have = actual.get(name)
        if have is not None and _same(name, want, have):
            continue
        changes.append(AttributeChange(queue, name, have, want))
    return tuple(changes)


def check_fifo(queue: str, actual: Mapping[str, str]) -> None:
    """Raise :class:`ProvisionError` when an existing queue is not FIFO."""
    if actual.get("FifoQueue", "false").lower() != "true":
        raise ProvisionError(
            f"queue {queue} exists but is not a FIFO queue, and SQS cannot make an existing "
            "queue FIFO: delete it (transflow queues delete, then wait 60 seconds) or name "
            "other queues in transflow.config.json (sqs.queueName, sqs.progressQueueName, "
            "sqs.dlqName), then run ensure again"
        )


def visibility_warning(visibility_timeout_sec: int, function_timeout_sec: int | None) -> str | None:
    """A warning when the processing queue's visibility timeout is too short for a function
    that may run ``function_timeout_sec`` seconds, or None."""
    if function_timeout_sec is None:
        return None
    advised = VISIBILITY_FACTOR * function_timeout_sec
    if visibility_timeout_sec >= advised:
        return None
    consequence = (
        "Lambda refuses an event source mapping whose queue visibility timeout is shorter "
        "than the function timeout"
        if visibility_timeout_sec < function_timeout_sec
        else "a retried batch may become visible again while an earlier attempt still runs"
    )
    return (
        f"sqs.visibilityTimeoutSec is {visibility_timeout_sec}s, below {VISIBILITY_FACTOR} x "
        f"the function timeout of {function_timeout_sec}s ({advised}s) that AWS advises: "
        f"{consequence}; raise sqs.visibilityTimeoutSec or shorten the function timeout"
    )


def tag_changes(
    queue: str, desired: Mapping[str, str], actual: Mapping[str, str]
) -> tuple[AttributeChange, ...]:
    """The tags of ``desired`` missing from or different in ``actual``."""
    return tuple(
        AttributeChange(queue, f"tag:{key}", actual.get(key), value)
        for key, value in desired.items()
        if actual.get(key) != value
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_normalise(v) for v in value), key=repr)
    return str(value)


def _same(name: str, want: str, have: str) -> bool:
    if name in _JSON_ATTRIBUTES:
        try:
            return bool(_normalise(json.loads(want)) == _normalise(json.loads(have)))
        except json.JSONDecodeError:
            return want == have
    return want.lower() == have.lower() if want in ("true", "false") else want == have
