"""The three FIFO queues of a project and branch: create them, correct drift, delete them.

:func:`ensure_queues` makes the dead-letter queue, the processing queue and the progress
queue exist with the attributes the spec asks for, and is idempotent: a second run makes no
change. An existing queue whose attributes drifted is corrected and the change reported; one
whose attributes SQS cannot change (a standard queue where a FIFO queue is needed) is a
:class:`~transflow.errors.ProvisionError`.

The decisions (which attributes, what differs, what to warn about) are plain functions in
:mod:`transflow.ops.queue_spec`; the I/O is here: :func:`ensure_queues_report`,
:func:`delete_queues`, :func:`describe_queues` and :func:`resolve_queue_urls`. IAM policy
documents and the SAM template are pure and live in :mod:`transflow.ops.iam` and
:mod:`transflow.ops.sam`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
import botocore.exceptions

from transflow._aws.errors import client_error_codes
from transflow._wire.naming import QueueNames
from transflow.config import TransflowConfig
from transflow.errors import ConfigError, ProvisionError, ProvisionWarning, QueueNotFoundError
from transflow.ops.queue_spec import (
    AttributeChange,
    check_fifo,
    desired_attributes,
    desired_tags,
    diff_attributes,
    sibling_arn,
    tag_changes,
    visibility_warning,
)
from transflow.processing.destination import ProgressDestination

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "EnsureReport",
    "QueueDescription",
    "QueueUrls",
    "delete_queues",
    "describe_queues",
    "ensure_queues",
    "ensure_queues_report",
    "ensure_topic",
    "resolve_progress_destination",
    "resolve_queue_urls",
]

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
ROLES = ("processing", "progress", "dlq")


@attrs.frozen
class QueueUrls:
    """The URLs of the three queues of one project and branch."""

    processing: str
    progress: str
    dlq: str


@attrs.frozen
class EnsureReport:
    """What :func:`ensure_queues_report` found and did."""

    urls: QueueUrls
    created: tuple[str, ...] = ()
    changes: tuple[AttributeChange, ...] = ()
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    """``{queue}: {attribute}`` set but not kept by the endpoint (moto keeps no
    RedriveAllowPolicy, for example); not reported as a change on every run."""
    topic_arn: str | None = None
    """The SNS FIFO progress topic, in fan-out mode (``sqs.progressFanout: "sns"``)."""

    @property
    def changed(self) -> bool:
        """Whether anything was created or corrected."""
        return bool(self.created or self.changes)


@attrs.frozen
class QueueDescription:
    """One queue as the endpoint reports it; ``url`` is None when it does not exist."""

    role: str
    name: str
    url: str | None
    attributes: Mapping[str, str] = attrs.field(factory=dict)
    tags: Mapping[str, str] = attrs.field(factory=dict)


# -- I/O ----------------------------------------------------------------------------------


def _is_not_found(exc: botocore.exceptions.ClientError) -> bool:
    return bool(client_error_codes(exc) & _NOT_FOUND_CODES)


def _lookup(sqs: SQSClient, name: str) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except botocore.exceptions.ClientError as exc:
        if _is_not_found(exc):
            return None
        raise


def _attributes(sqs: SQSClient, url: str) -> dict[str, str]:
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {str(k): v for k, v in found.items()}


def _create(
    sqs: SQSClient, name: str, attributes: Mapping[str, str], tags: Mapping[str, str]
) -> tuple[str, bool]:
    """Create the queue; (url, created). Someone else creating it first is not an error."""
    try:
        url = sqs.create_queue(QueueName=name, Attributes=dict(attributes), tags=dict(tags))[  # type: ignore[arg-type]
            "QueueUrl"
        ]
    except botocore.exceptions.ClientError as exc:
        if "QueueAlreadyExists" not in client_error_codes(exc):
            raise
        existing = _lookup(sqs, name)
        if existing is None:
            raise
        return existing, False
    log.info("created queue %s", name)
    return url, True


@attrs.define
class _Reconciler:
    sqs: SQSClient
    tags: Mapping[str, str]
    created: list[str] = attrs.field(factory=list)
    changes: list[AttributeChange] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    ignored: list[str] = attrs.field(factory=list)

    def ensure(
        self, name: str, create_with: Mapping[str, str], desired: Mapping[str, str] | None
    ) -> tuple[str, dict[str, str] | None]:
        """Make queue ``name`` exist; correct it to ``desired`` when given. Returns its URL
        and its attributes when they were read."""
        url = _lookup(self.sqs, name)
        fresh = False
        if url is None:
            url, fresh = _create(self.sqs, name, create_with, self.tags)
        if fresh:
            self.created.append(name)
            if desired is None or dict(desired) == dict(create_with):
                return url, None
        actual = _attributes(self.sqs, url)
        check_fifo(name, actual)
        if desired is not None:
            self._correct(name, url, desired, actual, report=not fresh)
        if not fresh:
            self._tag(name, url)
        return url, actual

    def _correct(
        self,
        name: str,
        url: str,
        desired: Mapping[str, str],
        actual: Mapping[str, str],
        *,
        report: bool,
    ) -> None:
        changes = diff_attributes(name, desired, actual)
        if not changes:
            return
        self.sqs.set_queue_attributes(
            QueueUrl=url,
            Attributes={c.attribute: c.after for c in changes},  # type: ignore[misc]
        )
        # Some endpoints (moto, older LocalStack) accept an attribute and ignore it; such an
        # attribute is reported as ignored, not as a change made on every run.
        after = _attributes(self.sqs, url)
        for change in changes:
            if change.attribute not in after and change.before is None:
                log.info("queue %s: the endpoint does not keep %s", name, change.attribute)
                self.ignored.append(f"{name}: {change.attribute}")
            elif report:
                log.warning(
                    "queue %s: %s was %r, set to %r",
                    name,
                    change.attribute,
                    change.before,
                    change.after,
                )
                self.changes.append(change)

    def _tag(self, name: str, url: str) -> None:
        actual = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        changes = tag_changes(name, self.tags, actual)
        if changes:
            self.sqs.tag_queue(
                QueueUrl=url, Tags={c.attribute[len("tag:") :]: c.after for c in changes}
            )
            self.changes.extend(changes)


def ensure_topic(sns: SNSClient, config: TransflowConfig) -> str:
    """Create the SNS FIFO progress topic of fan-out mode if it does not exist (CreateTopic is
    idempotent) and return its ARN; with ``sqs.progressTopicArn`` set, that ARN is returned
    untouched (the topic is someone else's to manage). Deduplication ids are always sent
    explicitly, so content-based deduplication stays off."""
    if config.sqs.progress_topic_arn:
        return config.sqs.progress_topic_arn
    response = sns.create_topic(
        Name=config.topic_name,
        Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "false"},
        Tags=[{"Key": k, "Value": v} for k, v in desired_tags(config).items()],
    )
    return response["TopicArn"]


def ensure_queues_report(
    sqs: SQSClient,
    config: TransflowConfig,
    *,
    function_timeout_sec: int | None = None,
    sns: SNSClient | None = None,
) -> EnsureReport:
    """Create or correct the DLQ, the processing queue and the progress queue of
    ``config``'s project and branch, and say what changed. In fan-out mode
    (``sqs.progressFanout: "sns"``), also the SNS FIFO progress topic (:func:`ensure_topic`;
    pass ``sns``); the hub instances make their own queues.

    ``function_timeout_sec`` is the processing function's timeout, when known: a visibility
    timeout below six times it gives a :class:`ProvisionWarning` (and a line in
    ``warnings``). Raises :class:`ProvisionError` when an existing queue is not FIFO."""
    names = config.queue_names
    work = _Reconciler(sqs, desired_tags(config))
    advice = visibility_warning(config.sqs.visibility_timeout_sec, function_timeout_sec)
    if advice:
        work.warnings.append(advice)

    # The DLQ goes first: the processing queue's redrive policy names its ARN, and the DLQ's
    # redrive-allow policy names the processing queue's, which follows from the DLQ's.
    bare = desired_attributes(config, dlq_arn="", processing_arn="")["dlq"]
    bare.pop("RedriveAllowPolicy")
    dlq_url, dlq_actual = work.ensure(names.dlq, bare, None)
    if dlq_actual is None:
        dlq_actual = _attributes(sqs, dlq_url)
    dlq_arn = dlq_actual["QueueArn"]
    desired = desired_attributes(
        config, dlq_arn=dlq_arn, processing_arn=sibling_arn(dlq_arn, names.processing)
    )
    work._correct(
        names.dlq, dlq_url, desired["dlq"], dlq_actual, report=names.dlq not in work.created
    )
    processing_url, _ = work.ensure(names.processing, desired["processing"], desired["processing"])
    progress_url, _ = work.ensure(names.progress, desired["progress"], desired["progress"])

    topic_arn = None
    if config.sqs.fanout:
        if sns is None:
            raise ProvisionError(
                "fan-out mode (sqs.progressFanout 'sns') needs the progress topic: pass sns= "
                "(an SNS client) to ensure_queues"
            )
        topic_arn = ensure_topic(sns, config)
    for line in work.warnings:
        warnings.warn(line, ProvisionWarning, stacklevel=2)
    return EnsureReport(
        topic_arn=topic_arn,
        urls=QueueUrls(processing=processing_url, progress=progress_url, dlq=dlq_url),
        created=tuple(work.created),
        changes=tuple(work.changes),
        warnings=tuple(work.warnings),
        ignored=tuple(work.ignored),
    )


def ensure_queues(
    sqs: SQSClient,
    config: TransflowConfig,
    *,
    function_timeout_sec: int | None = None,
    sns: SNSClient | None = None,
) -> QueueUrls:
    """Create or correct the three queues of ``config``'s project and branch (and in fan-out
    mode the progress topic, with ``sns``) and return their URLs. Idempotent.
    :func:`ensure_queues_report` also says what changed, and the topic's ARN."""
    return ensure_queues_report(
        sqs, config, function_timeout_sec=function_timeout_sec, sns=sns
    ).urls


def resolve_queue_urls(sqs: SQSClient, config: TransflowConfig) -> QueueUrls:
    """The queue URLs from the configuration where it has them, else looked up by name.

    Raises :class:`QueueNotFoundError` naming the missing queue."""
    names = config.queue_names
    given = {
        "processing": config.sqs.queue_url,
        "progress": config.sqs.progress_queue_url,
        "dlq": config.sqs.dlq_url,
    }
    urls: dict[str, str] = {}
    for role in ROLES:
        url = given[role] or _lookup(sqs, getattr(names, role))
        if url is None:
            raise QueueNotFoundError(
                f"the {role} queue {getattr(names, role)} does not exist on this endpoint: "
                "run 'transflow queues ensure' (or ensure_queues) first, or check --region, "
                "--endpoint-url and the project and branch in the configuration"
            )
        urls[role] = url
    return QueueUrls(**urls)


def describe_queues(sqs: SQSClient, config: TransflowConfig) -> tuple[QueueDescription, ...]:
    """Every queue of the project and branch with its attributes and tags; a missing one
    has ``url`` None."""
    names = config.queue_names
    described = []
    for role in ROLES:
        name = getattr(names, role)
        url = _lookup(sqs, name)
        if url is None:
            described.append(QueueDescription(role, name, None))
            continue
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        described.append(QueueDescription(role, name, url, _attributes(sqs, url), dict(tags)))
    return tuple(described)


def delete_queues(sqs: SQSClient, names: QueueNames | TransflowConfig) -> tuple[str, ...]:
    """Delete a branch's queues (processing and progress, then the DLQ) and return the names
    deleted; queues already gone are skipped.

    Messages in them are lost, the DLQ's failed jobs included. SQS refuses to create a queue
    of the same name for 60 seconds after its deletion."""
    if isinstance(names, TransflowConfig):
        names = names.queue_names
    deleted = []
    for name in (names.processing, names.progress, names.dlq):
        url = _lookup(sqs, name)
        if url is None:
            continue
        try:
            sqs.delete_queue(QueueUrl=url)
        except botocore.exceptions.ClientError as exc:
            if not _is_not_found(exc):
                raise
            continue
        log.info("deleted queue %s", name)
        deleted.append(name)
    return tuple(deleted)


def resolve_progress_destination(
    sqs: SQSClient, config: TransflowConfig, *, sns: SNSClient | None = None
) -> ProgressDestination:
    """Where ``config`` says progress goes, looked up like :func:`resolve_queue_urls`: in
    fan-out mode the SNS FIFO topic (``sqs.progressTopicArn``, else the one
    :func:`ensure_topic` makes; pass ``sns``), otherwise the progress queue, with the
    configured message size. For the operations that publish final events
    (:func:`transflow.ops.announce.announce`, the recovery sweep) and the worker."""
    if config.sqs.fanout:
        if sns is None:
            raise ConfigError(
                "progress goes to the SNS FIFO topic in fan-out mode (sqs.progressFanout "
                "'sns'): pass sns= (an SNS client)"
            )
        return ProgressDestination.from_config(config, topic_arn=ensure_topic(sns, config))
    return ProgressDestination.from_config(
        config, queue_url=resolve_queue_urls(sqs, config).progress
    )
