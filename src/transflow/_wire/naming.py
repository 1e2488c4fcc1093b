"""Branch names and the SQS queue names derived from them.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import hashlib
import re

import attrs

from transflow.errors import ConfigError

__all__ = ["MAX_QUEUE_NAME", "QueueNames", "is_valid_project", "queue_names", "sanitize_branch"]

MAX_QUEUE_NAME = 80
"""SQS's limit on a queue name, ``.fifo`` included."""

_NOT_ALLOWED = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_PROJECT = re.compile(r"[A-Za-z0-9_-]+")
_SUFFIXES = ("processing", "progress", "dlq")
_LONGEST_SUFFIX = max(len(f"-{s}.fifo") for s in _SUFFIXES)
_HASH_CHARS = 8


def is_valid_project(name: str) -> bool:
    """Whether ``name`` can start a queue name: letters, digits, ``-`` and ``_``."""
    return _PROJECT.fullmatch(name) is not None


def sanitize_branch(name: str) -> str:
    """A git branch name as it may appear in queue names, keys and channels.

    Lowercase, only ``[a-z0-9-]``, runs of dashes collapsed, no leading or trailing dash;
    an empty result becomes ``main``. ``feature/Login-Page`` becomes ``feature-login-page``.
    """
    cleaned = _NOT_ALLOWED.sub("-", name.lower())
    cleaned = _DASHES.sub("-", cleaned).strip("-")
    return cleaned or "main"


@attrs.frozen
class QueueNames:
    """The three FIFO queue names of one project and branch, and the standard queue (with
    its own dead-letter queue) that carries S3 notifications to the bridge in a deployment
    (S3 cannot notify a FIFO queue)."""

    processing: str
    progress: str
    dlq: str
    uploads: str = ""
    uploads_dlq: str = ""


def queue_names(project: str, branch: str) -> QueueNames:
    """``{project}-{branch}-processing.fifo``, ``…-progress.fifo`` and ``…-dlq.fifo``, and
    the standard queues ``…-uploads`` and ``…-uploads-dlq``.

    The branch goes through :func:`sanitize_branch`. When a name would pass SQS's 80
    characters, the shared ``{project}-{branch}`` part is cut and ends in a short hash of the
    full project and branch, so two branches never share a queue and the three queues of one
    branch still sort together.
    """
    if not is_valid_project(project):
        raise ConfigError(
            f"project {project!r} may only hold letters, digits, '-' and '_' "
            "(it becomes part of SQS queue names)"
        )
    branch = sanitize_branch(branch)
    base = f"{project}-{branch}"
    room = MAX_QUEUE_NAME - _LONGEST_SUFFIX
    if len(base) > room:
        digest = hashlib.sha256(f"{project}\0{branch}".encode()).hexdigest()[:_HASH_CHARS]
        base = f"{base[: room - _HASH_CHARS - 1].rstrip('-')}-{digest}"
    processing, progress, dlq = (f"{base}-{suffix}.fifo" for suffix in _SUFFIXES)
    return QueueNames(
        processing, progress, dlq, uploads=f"{base}-uploads", uploads_dlq=f"{base}-uploads-dlq"
    )
