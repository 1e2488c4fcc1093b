"""``transflow.config.json`` and environment variables → :class:`TransflowConfig`.

The file holds what a project decides once (names, limits); the environment holds what a
deployment decides (queue URLs, region). Environment variables win over the file. Every
problem found is reported at once, each with its key path, its value and what is allowed.

Pure: reads one file and a mapping; no AWS.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from transflow._wire.limits import MAX_MESSAGE_BYTES
from transflow._wire.naming import (
    MAX_QUEUE_NAME,
    QueueNames,
    instance_queue_prefix,
    is_valid_project,
    queue_names,
    sanitize_branch,
    topic_name,
)
from transflow._wire.tokens import ENV_STREAM_SECRET, check_stream_secret
from transflow.errors import ConfigError, UnknownConfigKeyWarning

__all__ = ["CONFIG_FILENAME", "SqsConfig", "TransflowConfig", "load_config"]

CONFIG_FILENAME = "transflow.config.json"
"""The file `load_config` reads from the working directory when no path is given."""

MIGRATION_STEPS = (
    "1. replace the 'redis' section of transflow.config.json with an 'sqs' section "
    '(for example {"sqs": {"visibilityTimeoutSec": 960, "maxReceiveCount": 3, '
    '"batchSize": 10}});',
    "2. remove REDIS_URL from the environment of every function and server;",
    "3. create the queues (processing, progress and dead-letter, all FIFO) and set "
    "SQS_QUEUE_URL and SQS_PROGRESS_QUEUE_URL;",
    "4. deploy, then check that progress reaches the browser over SSE.",
)

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
_FIFO_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,251}\.fifo")


@attrs.frozen
class _Range:
    low: int
    high: int


# Wire key -> (attribute, default, allowed range). The one table the loader, the docs and the
# tests read.
_SQS_INTS: dict[str, tuple[str, int, _Range]] = {
    "visibilityTimeoutSec": ("visibility_timeout_sec", 960, _Range(1, 43_200)),
    "maxReceiveCount": ("max_receive_count", 3, _Range(1, 1_000)),
    "batchSize": ("batch_size", 10, _Range(1, 10)),
    "retentionSec": ("retention_sec", 14 * 24 * 3600, _Range(60, 14 * 24 * 3600)),
    "maxMessageBytes": ("max_message_bytes", MAX_MESSAGE_BYTES, _Range(1_024, 1_048_576)),
    # Fan-out mode: a hub instance queue not seen for this long is swept (by any hub and by
    # `transflow queues sweep`); the hub refreshes its tag every third of it.
    "instanceStaleSec": ("instance_stale_sec", 300, _Range(60, 86_400)),
}
# Wire key -> (attribute, default, allowed values).
_SQS_CHOICES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # "sqs": one progress queue, one hub (one process). "sns": the processor publishes to an
    # SNS FIFO topic and every hub instance gets its own queue (any number of processes).
    "progressFanout": ("progress_fanout", "sqs", ("sqs", "sns")),
}
_SQS_NAMES = {
    "queueName": "queue_name",
    "progressQueueName": "progress_queue_name",
    "dlqName": "dlq_name",
}
_SQS_URLS = {
    "queueUrl": "queue_url",
    "progressQueueUrl": "progress_queue_url",
    "dlqUrl": "dlq_url",
}
_SQS_TOPIC_ARN = "progressTopicArn"
_TOP_LEVEL = {"project", "region", "branch", "sqs", "streamSecret", "$schema"}
_SQS_KEYS = set(_SQS_INTS) | set(_SQS_CHOICES) | set(_SQS_NAMES) | set(_SQS_URLS) | {_SQS_TOPIC_ARN}

ENV_QUEUE_URL = "SQS_QUEUE_URL"
ENV_PROGRESS_QUEUE_URL = "SQS_PROGRESS_QUEUE_URL"
ENV_DLQ_URL = "SQS_DLQ_URL"
ENV_PROGRESS_TOPIC_ARN = "SNS_PROGRESS_TOPIC_ARN"
ENV_BATCH_SIZE = "MAX_BATCH_SIZE"
ENV_PROJECT = "TRANSFLOW_PROJECT"
ENV_BRANCH = "TRANSFLOW_BRANCH"


@attrs.frozen
class SqsConfig:
    """The ``sqs`` section: queue names or URLs, and the limits of the pipeline."""

    queue_name: str | None = None
    progress_queue_name: str | None = None
    dlq_name: str | None = None
    queue_url: str | None = None
    progress_queue_url: str | None = None
    dlq_url: str | None = None
    visibility_timeout_sec: int = 960
    max_receive_count: int = 3
    batch_size: int = 10
    retention_sec: int = 14 * 24 * 3600
    max_message_bytes: int = MAX_MESSAGE_BYTES
    progress_fanout: str = "sqs"
    """``"sqs"`` (one progress queue, one hub) or ``"sns"`` (an SNS FIFO topic, one queue per
    hub instance); ``progress_topic_arn`` implies ``"sns"``."""
    progress_topic_arn: str | None = None
    instance_stale_sec: int = 300

    @property
    def fanout(self) -> bool:
        """Whether progress goes through the SNS FIFO topic to every hub instance."""
        return self.progress_fanout == "sns" or self.progress_topic_arn is not None


@attrs.frozen
class TransflowConfig:
    """A project's configuration, resolved from the file and the environment."""

    project: str
    sqs: SqsConfig = attrs.field(factory=SqsConfig)
    branch: str = attrs.field(default="main", converter=sanitize_branch)
    region: str | None = None
    stream_secret: str | None = attrs.field(default=None, repr=False)
    """The key stream tokens are signed with: from ``TRANSFLOW_STREAM_SECRET`` only, never
    the file (a committed file would publish it)."""

    @property
    def queue_names(self) -> QueueNames:
        """The three queue names: explicit names from the file, else derived from
        project and branch (:func:`transflow.queue_names`)."""
        derived = queue_names(self.project, self.branch)
        return QueueNames(
            processing=self.sqs.queue_name or derived.processing,
            progress=self.sqs.progress_queue_name or derived.progress,
            dlq=self.sqs.dlq_name or derived.dlq,
            uploads=derived.uploads,
            uploads_dlq=derived.uploads_dlq,
        )

    @property
    def topic_name(self) -> str:
        """The SNS FIFO progress topic's name in fan-out mode (the ARN's last part when
        ``sqs.progressTopicArn`` is set, else ``{project}-{branch}-progress.fifo``)."""
        if self.sqs.progress_topic_arn:
            return self.sqs.progress_topic_arn.rsplit(":", 1)[1]
        return topic_name(self.project, self.branch)

    @property
    def instance_queue_prefix(self) -> str:
        """What every hub instance queue of this branch starts with (fan-out mode)."""
        return instance_queue_prefix(self.project, self.branch)


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> TransflowConfig:
    """Load ``transflow.config.json`` (from the working directory when ``path`` is None) and
    apply environment overrides.

    Without ``path`` and without a file in the working directory, the configuration comes
    from the environment alone, which is how a Lambda function is usually configured; it
    then needs ``SQS_QUEUE_URL`` and ``TRANSFLOW_PROJECT``.

    Raises :class:`ConfigError` listing every problem. Unknown keys give an
    :class:`UnknownConfigKeyWarning` and are ignored.
    """
    env = os.environ if env is None else env
    source, raw = _read(path, env)
    _refuse_redis(source, raw, env)
    problems: list[str] = []
    if raw is not None and "sqs" not in raw:
        problems.append(
            "the 'sqs' section is required; add for example "
            '"sqs": {"visibilityTimeoutSec": 960, "maxReceiveCount": 3, "batchSize": 10}'
        )
    raw = raw or {}
    _warn_unknown(source, raw)
    sqs_raw = raw.get("sqs", {})
    if not isinstance(sqs_raw, dict):
        problems.append(f"sqs: must be an object, not {type(sqs_raw).__name__}")
        sqs_raw = {}

    sqs_values = _sqs_from_file(sqs_raw, problems)
    _sqs_from_env(env, sqs_values, problems)
    project, branch, region = _identity(raw, env, problems)
    stream_secret = _stream_secret(raw, env, problems)
    if problems:
        raise ConfigError(f"invalid configuration ({source}): " + "; ".join(problems))
    assert project is not None
    return TransflowConfig(
        project=project,
        sqs=SqsConfig(**sqs_values),
        branch=branch,
        region=region,
        stream_secret=stream_secret,
    )


def _stream_secret(
    raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> str | None:
    if "streamSecret" in raw:
        problems.append(
            f"streamSecret: a secret does not belong in a file that is committed; remove it "
            f"and set {ENV_STREAM_SECRET} in the environment of each server"
        )
    secret = env.get(ENV_STREAM_SECRET) or None
    if secret is not None:
        try:
            check_stream_secret(secret)
        except ConfigError as exc:
            problems.append(f"{ENV_STREAM_SECRET}: {exc}")
            return None
    return secret


def _sqs_from_file(sqs_raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, (attribute, default, allowed) in _SQS_INTS.items():
        value = sqs_raw.get(key, default)
        problem = _check_int(f"sqs.{key}", value, allowed)
        if problem:
            problems.append(problem)
        else:
            values[attribute] = value
    for key, (name, fallback, choices) in _SQS_CHOICES.items():
        choice = sqs_raw.get(key, fallback)
        if choice in choices:
            values[name] = choice
        else:
            problems.append(
                f"sqs.{key}: must be one of {', '.join(map(repr, choices))}, not {choice!r}"
            )
    _topic_arn(sqs_raw.get(_SQS_TOPIC_ARN), f"sqs.{_SQS_TOPIC_ARN}", values, problems)
    if (
        values.get("progress_fanout") == "sqs"
        and "progressFanout" in sqs_raw
        and (values.get("progress_topic_arn"))
    ):
        problems.append(
            f"sqs.{_SQS_TOPIC_ARN} is set but sqs.progressFanout is 'sqs': set progressFanout "
            "to 'sns' (or remove it) to publish progress to the topic"
        )
    for key, attribute in {**_SQS_NAMES, **_SQS_URLS}.items():
        value = sqs_raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            problems.append(f"sqs.{key}: must be a non-empty string, not {value!r}")
        elif key in _SQS_NAMES and not _QUEUE_NAME.fullmatch(value):
            problems.append(
                f"sqs.{key}: {value!r} is not a FIFO queue name (letters, digits, '-' and "
                f"'_', ending in '.fifo', at most {MAX_QUEUE_NAME} characters)"
            )
        else:
            values[attribute] = value
    return values


def _topic_arn(value: object, where: str, values: dict[str, Any], problems: list[str]) -> None:
    if value is None or value == "":
        return
    if isinstance(value, str) and _FIFO_TOPIC_ARN.fullmatch(value):
        values["progress_topic_arn"] = value
        return
    problems.append(
        f"{where}: {value!r} is not the ARN of an SNS FIFO topic "
        "(arn:aws:sns:{region}:{account}:{name}.fifo)"
    )


def _sqs_from_env(env: Mapping[str, str], values: dict[str, Any], problems: list[str]) -> None:
    _topic_arn(env.get(ENV_PROGRESS_TOPIC_ARN), ENV_PROGRESS_TOPIC_ARN, values, problems)
    for var, attribute in (
        (ENV_QUEUE_URL, "queue_url"),
        (ENV_PROGRESS_QUEUE_URL, "progress_queue_url"),
        (ENV_DLQ_URL, "dlq_url"),
    ):
        if env.get(var):
            values[attribute] = env[var]
    text = env.get(ENV_BATCH_SIZE)
    if not text:
        return
    allowed = _SQS_INTS["batchSize"][2]
    try:
        batch = int(text)
    except ValueError:
        problems.append(
            f"{ENV_BATCH_SIZE}={text!r}: must be an integer from {allowed.low} to {allowed.high}"
        )
        return
    problem = _check_int(ENV_BATCH_SIZE, batch, allowed)
    if problem:
        problems.append(problem)
    else:
        values["batch_size"] = batch


def _identity(
    raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> tuple[str | None, str, str | None]:
    project = env.get(ENV_PROJECT) or raw.get("project")
    if project is None:
        problems.append(
            f"project: required; set it in {CONFIG_FILENAME} or in the {ENV_PROJECT} "
            "environment variable"
        )
    elif not isinstance(project, str) or not is_valid_project(project):
        problems.append(
            f"project: {project!r} may only hold letters, digits, '-' and '_' "
            "(it becomes part of queue names)"
        )
        project = None
    branch = env.get(ENV_BRANCH) or raw.get("branch", "main")
    if not isinstance(branch, str):
        problems.append(f"branch: must be a string, not {branch!r}")
        branch = "main"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or raw.get("region")
    if region is not None and not isinstance(region, str):
        problems.append(f"region: must be a string, not {region!r}")
        region = None
    return project, branch, region


def _read(
    path: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> tuple[str, dict[str, Any] | None]:
    if path is None:
        candidate = Path.cwd() / CONFIG_FILENAME
        if not candidate.exists():
            if env.get(ENV_QUEUE_URL):
                return "environment", None
            raise ConfigError(
                f"no {CONFIG_FILENAME} in {Path.cwd()} and no {ENV_QUEUE_URL} in the "
                "environment: run 'transflow init', pass a path to load_config, or set the "
                "queue URLs in the environment"
            )
        file = candidate
    else:
        file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{file}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: must hold a JSON object, not {type(data).__name__}")
    return str(file), data


def _refuse_redis(source: str, raw: Mapping[str, Any] | None, env: Mapping[str, str]) -> None:
    found = []
    if raw is not None and "redis" in raw:
        found.append(f"a 'redis' section in {source}")
    if env.get("REDIS_URL"):
        found.append("REDIS_URL in the environment")
    if found:
        raise ConfigError(
            f"redis is no longer supported (found {' and '.join(found)}): transflow uses "
            "SQS only, and the 'sqs' section is now required. Migration steps: "
            + " ".join(MIGRATION_STEPS)
            + " See docs/migration-from-redis.md."
        )


def _check_int(where: str, value: object, allowed: _Range) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{where}: must be an integer from {allowed.low} to {allowed.high}, not {value!r}"
    if not allowed.low <= value <= allowed.high:
        return f"{where}: {value} is out of range; allowed {allowed.low} to {allowed.high}"
    return None


def _warn_unknown(source: str, raw: Mapping[str, Any]) -> None:
    sqs = raw.get("sqs")
    unknown = [(k, _TOP_LEVEL, k) for k in raw if k not in _TOP_LEVEL]
    if isinstance(sqs, dict):
        unknown += [(k, _SQS_KEYS, f"sqs.{k}") for k in sqs if k not in _SQS_KEYS]
    for key, known, path in unknown:
        if key == "redis":
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        warnings.warn(
            f"{source}: unknown configuration key {path!r} is ignored{hint}",
            UnknownConfigKeyWarning,
            stacklevel=3,
        )


def config_keys() -> Iterator[tuple[str, str, int, int, int]]:
    """(key path, attribute, default, low, high) of every numeric ``sqs`` key, for docs and
    tests."""
    for key, (attribute, default, allowed) in _SQS_INTS.items():
        yield f"sqs.{key}", attribute, default, allowed.low, allowed.high
