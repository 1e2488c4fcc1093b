"""Branch names and the SQS queue names derived from them.

Pure: no AWS, no I/O.
"""

from __future__ import annotations

import hashlib
import re

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow.errors import ConfigError

__all__ = [
    "INSTANCE_ID_CHARS",
    "MAX_BRANCH_CHARS",
    "MAX_QUEUE_NAME",
    "QueueNames",
    "branch_problem",
    "instance_queue_name",
    "instance_queue_prefix",
    "is_canonical_branch",
    "is_fifo_queue_name",
    "is_instance_queue",
    "is_queue_url",
    "is_valid_project",
    "queue_names",
    "sanitize_branch",
    "topic_name",
]

MAX_QUEUE_NAME = 80
"""SQS's limit on a queue name, ``.fifo`` included."""

MAX_BRANCH_CHARS = 64
"""The longest canonical branch name; a longer one is cut and hashed like any name that
needed changing (it is part of every key, queue and channel of the branch)."""

# Canonical: kept as typed (lowercase a-z, 0-9, single inner dashes), or derived from a
# name that needed changing: its cleaned form, "--", and 8 hex of the raw name's SHA-256.
# No kept name holds "--", so no kept name can equal a derived one.
_KEPT = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_DERIVED = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*--[0-9a-f]{8}")
# Patterns a Lambda handler seldom or never uses are strings, compiled by re on first use
# (and kept in its cache), so a cold start does not compile them.
_NOT_ALLOWED = r"[^a-z0-9-]+"
_DASHES = r"-{2,}"
_PROJECT = r"[A-Za-z0-9_-]+"
_SUFFIXES = ("processing", "progress", "dlq")
_LONGEST_SUFFIX = max(len(f"-{s}.fifo") for s in _SUFFIXES)
_HASH_CHARS = 8
_FIFO_QUEUE_NAME = rf"[A-Za-z0-9_-]{{1,{MAX_QUEUE_NAME - len('.fifo')}}}\.fifo"
# https://sqs.{region}.amazonaws.com/{account}/{name}, and the same shape on local
# endpoints (moto, ElasticMQ, LocalStack: http://host:port/{account}/{name}), plus
# LocalStack's path-style form http://host:port/queue/{region}/{account}/{name}.
_QUEUE_URL = (
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/(?:queue/[a-z0-9-]+/)?[A-Za-z0-9_-]+/"
    r"([A-Za-z0-9_-]+(?:\.fifo)?)"
)
INSTANCE_ID_CHARS = 12
"""Length of a hub instance id (lowercase hex) in its queue's name."""
_INSTANCE_PART = "-progress-"
_FIFO = ".fifo"


def is_valid_project(name: str) -> bool:
    """Whether ``name`` can start a queue name: letters, digits, ``-`` and ``_``."""
    return re.fullmatch(_PROJECT, name) is not None


def is_fifo_queue_name(name: object) -> bool:
    """Whether ``name`` can name an SQS FIFO queue: letters, digits, ``-`` and ``_``, ending
    in ``.fifo``, at most :data:`MAX_QUEUE_NAME` characters."""
    return isinstance(name, str) and re.fullmatch(_FIFO_QUEUE_NAME, name) is not None


def is_queue_url(url: object, *, fifo: bool = True) -> bool:
    """Whether ``url`` has the shape of an SQS queue URL (``https://host/account/name``,
    or ``http://`` on a local endpoint); with ``fifo``, the name must be a FIFO queue's."""
    match = re.fullmatch(_QUEUE_URL, url) if isinstance(url, str) else None
    if match is None:
        return False
    name = match.group(1)
    return is_fifo_queue_name(name) if fifo else len(name) <= MAX_QUEUE_NAME


def is_canonical_branch(name: object) -> bool:
    """Whether ``name`` is a branch as :func:`sanitize_branch` returns it: at most
    :data:`MAX_BRANCH_CHARS` characters, either kept as typed (``main``,
    ``feature-login``) or derived (``feature-login--1a2b3c4d``)."""
    return (
        isinstance(name, str)
        and len(name) <= MAX_BRANCH_CHARS
        and (_KEPT.fullmatch(name) is not None or _DERIVED.fullmatch(name) is not None)
    )


def sanitize_branch(name: str) -> str:
    """A git branch name as it may appear in queue names, keys and channels.

    A canonical name (lowercase ``a-z``, ``0-9`` and single inner dashes, at most
    :data:`MAX_BRANCH_CHARS` characters) is kept as it is: ``main`` stays ``main``. Any other
    name is cleaned (lowercased, other characters to ``-``, runs of dashes collapsed, cut)
    and ends in ``--`` and 8 hex digits of the SHA-256 of the name as given, so it can never
    become another branch's name: ``Main`` becomes ``main--…`` (not production's ``main``),
    ``feat/x`` and ``feat_x`` differ. Applying it again changes nothing. A name with nothing
    left (``""``, ``!!!``, ``功能``) raises :class:`ConfigError`.
    """
    if not isinstance(name, str):
        raise ConfigError(f"branch must be a string, not {type(name).__name__}")
    if is_canonical_branch(name):
        return name
    cleaned = re.sub(_NOT_ALLOWED, "-", name.lower())
    cleaned = re.sub(_DASHES, "-", cleaned).strip("-")
    if not cleaned:
        raise ConfigError(
            f"branch {name[:80]!r} has no letters a-z or digits, so it cannot name queues, keys "
            "or channels; use an ASCII branch name (for example 'feature-login')"
        )
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    stem = cleaned[: MAX_BRANCH_CHARS - _HASH_CHARS - 2].rstrip("-")
    return f"{stem}--{digest}"


def branch_problem(name: object) -> str | None:
    """Why ``name`` cannot be used as it is where a canonical branch is needed (a job, a
    key's branch segment, a channel), naming what it would become; None when canonical."""
    if is_canonical_branch(name):
        return None
    try:
        canonical = sanitize_branch(name)  # type: ignore[arg-type]
    except ConfigError as exc:
        return (
            f"branch {str(name)[:80]!r} is not a canonical branch name and has no canonical "
            f"form: {exc}"
        )
    return (
        f"branch {str(name)[:80]!r} is not a canonical branch name (lowercase a-z, 0-9 and "
        f"single dashes, as sanitize_branch writes it); its canonical form is {canonical!r}"
    )


@attrs.frozen
class QueueNames:
    """The three FIFO queue names of one project and branch, and the standard queue (with
    its own dead-letter queue) that carries S3 notifications to the bridge in a deployment
    (S3 cannot notify a FIFO queue)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

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
    base = _base(project, branch, MAX_QUEUE_NAME - _LONGEST_SUFFIX)
    processing, progress, dlq = (f"{base}-{suffix}.fifo" for suffix in _SUFFIXES)
    return QueueNames(
        processing, progress, dlq, uploads=f"{base}-uploads", uploads_dlq=f"{base}-uploads-dlq"
    )


def _base(project: str, branch: str, room: int) -> str:
    """``{project}-{branch}``, cut to ``room`` characters and ended with a hash of both when
    longer."""
    if not is_valid_project(project):
        raise ConfigError(
            f"project {project!r} may only hold letters, digits, '-' and '_' "
            "(it becomes part of SQS queue and SNS topic names)"
        )
    branch = sanitize_branch(branch)
    base = f"{project}-{branch}"
    if len(base) > room:
        digest = hashlib.sha256(f"{project}\0{branch}".encode()).hexdigest()[:_HASH_CHARS]
        base = f"{base[: room - _HASH_CHARS - 1].rstrip('-')}-{digest}"
    return base


def topic_name(project: str, branch: str) -> str:
    """The SNS FIFO topic of a branch's progress in fan-out mode: the progress queue's name
    (``{project}-{branch}-progress.fifo``), in SNS."""
    return queue_names(project, branch).progress


def instance_queue_prefix(project: str, branch: str) -> str:
    """``{project}-{branch}-progress-``: what every hub instance queue of a branch starts
    with (cut and hashed like :func:`queue_names` so a whole name fits 80 characters)."""
    room = MAX_QUEUE_NAME - len(_INSTANCE_PART) - INSTANCE_ID_CHARS - len(_FIFO)
    return _base(project, branch, room) + _INSTANCE_PART


def instance_queue_name(prefix: str, instance_id: str) -> str:
    """``{prefix}{instance}.fifo``: the FIFO queue of one hub instance. Raises
    :class:`ConfigError` for an id that is not :data:`INSTANCE_ID_CHARS` lowercase hex
    characters or a name over 80 characters."""
    name = f"{prefix}{instance_id}{_FIFO}"
    if not re.fullmatch(_INSTANCE_ID, instance_id) or len(name) > MAX_QUEUE_NAME:
        raise ConfigError(
            f"instance queue {name!r}: the instance id must be {INSTANCE_ID_CHARS} lowercase "
            f"hex characters and the name at most {MAX_QUEUE_NAME} characters; use "
            "instance_queue_prefix() for the prefix"
        )
    return name


def is_instance_queue(prefix: str, name: str) -> bool:
    """Whether ``name`` is a hub instance queue under ``prefix`` (and not, say, a queue of a
    branch whose name merely starts the same way)."""
    return (
        name.startswith(prefix)
        and name.endswith(_FIFO)
        and re.fullmatch(_INSTANCE_ID, name[len(prefix) : -len(_FIFO)]) is not None
    )


_INSTANCE_ID = f"[0-9a-f]{{{INSTANCE_ID_CHARS}}}"
