"""``transflow.config.json`` and environment variables → :class:`TransflowConfig`.

The file holds what a project decides once (names, limits); the environment holds what a
deployment decides (queue URLs, region). Environment variables win over the file. Every
problem found is reported at once, each with its key path, its value and what is allowed.

Pure: reads one file and a mapping; no AWS.

A little over 500 lines: the option table (one rule per kind of option) and the loader that
reports every problem at once share those rules, and a third of the module is that table.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from transflow._wire.jsontext import JsonTextError, parse_json, show, type_name
from transflow._wire.limits import (
    MAX_BATCH_ENTRIES,
    MAX_MESSAGE_BYTES,
    MAX_VISIBILITY_TIMEOUT,
    MESSAGE_BYTES_RANGE,
)
from transflow._wire.naming import (
    MAX_QUEUE_NAME,
    QueueNames,
    instance_queue_prefix,
    is_fifo_queue_name,
    is_queue_url,
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

_REGION = re.compile(r"[a-z]{2,}(?:-[a-z]+)+-[0-9]{1,2}")
_BATCH_TEXT = re.compile(r"[0-9]{1,9}")


# -- the rules: one function per kind of option; the classes' validators and load_config
# both apply them, so an option is checked the same way however it arrives.


def _int_in(low: int, high: int) -> Callable[[str, object], str | None]:
    def check(where: str, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{where}: must be an integer from {low} to {high}, not {show(value)}"
        if not low <= value <= high:
            return f"{where}: {show(value)} is out of range; allowed {low} to {high}"
        return None

    return check


def _queue_name(where: str, value: object) -> str | None:
    if value is None or is_fifo_queue_name(value):
        return None
    return (
        f"{where}: {show(value)} is not a FIFO queue name (letters, digits, '-' and "
        f"'_', ending in '.fifo', at most {MAX_QUEUE_NAME} characters)"
    )


def _queue_url(where: str, value: object) -> str | None:
    if value is None or is_queue_url(value, fifo=True):
        return None
    return (
        f"{where}: {show(value)} is not a FIFO queue URL; expected "
        "https://sqs.{region}.amazonaws.com/{account}/{name}.fifo, or on a local endpoint "
        "http://host:port/{account}/{name}.fifo or LocalStack's "
        "http://host:port/queue/{region}/{account}/{name}.fifo (every transflow queue "
        "is FIFO; copy the URL from 'transflow provision' or the SQS console)"
    )


def _one_of(*choices: str) -> Callable[[str, object], str | None]:
    def check(where: str, value: object) -> str | None:
        if value in choices:
            return None
        return f"{where}: must be one of {', '.join(map(repr, choices))}, not {show(value)}"

    return check


_FIFO_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,251}\.fifo")


def _topic_arn(where: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and _FIFO_TOPIC_ARN.fullmatch(value)):
        return None
    return (
        f"{where}: {show(value)} is not the ARN of an SNS FIFO topic "
        "(arn:aws:sns:{region}:{account}:{name}.fifo)"
    )


def _project(where: str, value: object) -> str | None:
    if isinstance(value, str) and is_valid_project(value):
        return None
    return (
        f"{where}: {show(value)} may only hold letters, digits, '-' and '_' "
        "(it becomes part of queue names)"
    )


def _region(where: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and _REGION.fullmatch(value)):
        return None
    return f"{where}: {show(value)} is not an AWS region (for example us-east-1)"


def _branch(where: str, value: object) -> str | None:
    try:
        sanitize_branch(value)  # type: ignore[arg-type]
    except ConfigError as exc:
        return f"{where}: {exc}"
    return None


def _stream_secret_rule(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | tuple) or (
        isinstance(value, tuple) and not all(isinstance(v, str) for v in value)
    ):
        return f"{where}: must be a string or a tuple of strings, not {type_name(value)}"
    try:
        check_stream_secret(value)
    except ConfigError as exc:
        return f"{where}: {exc}"
    return None


def _validator(
    check: Callable[[str, object], str | None], where: str
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def validate(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
        problem = check(where, value)
        if problem:
            raise ConfigError(f"invalid configuration: {problem}")

    return validate


@attrs.frozen
class _Option:
    """One ``sqs`` option: its wire key, attribute, default and rule."""

    key: str
    attribute: str
    default: Any
    check: Callable[[str, object], str | None]
    low: int = 0
    high: int = 0


def _int_option(key: str, attribute: str, default: int, low: int, high: int) -> _Option:
    return _Option(key, attribute, default, _int_in(low, high), low, high)


# The one table of ``sqs`` options that the loader, the classes, the docs and the tests read.
_SQS_OPTIONS: tuple[_Option, ...] = (
    _Option("queueName", "queue_name", None, _queue_name),
    _Option("progressQueueName", "progress_queue_name", None, _queue_name),
    _Option("dlqName", "dlq_name", None, _queue_name),
    _Option("queueUrl", "queue_url", None, _queue_url),
    _Option("progressQueueUrl", "progress_queue_url", None, _queue_url),
    _Option("dlqUrl", "dlq_url", None, _queue_url),
    _int_option("visibilityTimeoutSec", "visibility_timeout_sec", 960, 1, MAX_VISIBILITY_TIMEOUT),
    _int_option("maxReceiveCount", "max_receive_count", 3, 1, 1_000),
    _int_option("batchSize", "batch_size", 10, 1, MAX_BATCH_ENTRIES),
    _int_option("retentionSec", "retention_sec", 14 * 24 * 3600, 60, 14 * 24 * 3600),
    _int_option("maxMessageBytes", "max_message_bytes", MAX_MESSAGE_BYTES, *MESSAGE_BYTES_RANGE),
    # "sqs": one progress queue, one hub (one process). "sns": the processor publishes to an
    # SNS FIFO topic and every hub instance gets its own queue (any number of processes).
    _Option("progressFanout", "progress_fanout", "sqs", _one_of("sqs", "sns")),
    _Option("progressTopicArn", "progress_topic_arn", None, _topic_arn),
    # Fan-out mode: a hub instance queue not seen for this long is swept (by any hub and by
    # `transflow queues sweep`); the hub refreshes its tag every third of it.
    _int_option("instanceStaleSec", "instance_stale_sec", 300, 60, 86_400),
)
_SQS_BY_KEY = {o.key: o for o in _SQS_OPTIONS}
_SQS_INTS = {o.key: o for o in _SQS_OPTIONS if o.high}
_TOP_LEVEL = {"project", "region", "branch", "sqs", "streamSecret", "$schema"}
_SQS_KEYS = set(_SQS_BY_KEY)

ENV_QUEUE_URL = "SQS_QUEUE_URL"
ENV_PROGRESS_QUEUE_URL = "SQS_PROGRESS_QUEUE_URL"
ENV_DLQ_URL = "SQS_DLQ_URL"
ENV_PROGRESS_TOPIC_ARN = "SNS_PROGRESS_TOPIC_ARN"
ENV_BATCH_SIZE = "MAX_BATCH_SIZE"
ENV_PROJECT = "TRANSFLOW_PROJECT"
ENV_BRANCH = "TRANSFLOW_BRANCH"
_ENV_URLS = {
    ENV_QUEUE_URL: "queueUrl",
    ENV_PROGRESS_QUEUE_URL: "progressQueueUrl",
    ENV_DLQ_URL: "dlqUrl",
    ENV_PROGRESS_TOPIC_ARN: "progressTopicArn",
}


def _sqs_field(key: str) -> Any:
    option = _SQS_BY_KEY[key]
    return attrs.field(default=option.default, validator=_validator(option.check, f"sqs.{key}"))


@attrs.frozen
class SqsConfig:
    """The ``sqs`` section: queue names or URLs, and the limits of the pipeline.

    Every value is checked when the class is built; a bad one raises :class:`ConfigError`.
    """

    queue_name: str | None = _sqs_field("queueName")
    progress_queue_name: str | None = _sqs_field("progressQueueName")
    dlq_name: str | None = _sqs_field("dlqName")
    queue_url: str | None = _sqs_field("queueUrl")
    progress_queue_url: str | None = _sqs_field("progressQueueUrl")
    dlq_url: str | None = _sqs_field("dlqUrl")
    visibility_timeout_sec: int = _sqs_field("visibilityTimeoutSec")
    max_receive_count: int = _sqs_field("maxReceiveCount")
    batch_size: int = _sqs_field("batchSize")
    retention_sec: int = _sqs_field("retentionSec")
    max_message_bytes: int = _sqs_field("maxMessageBytes")
    progress_fanout: str = _sqs_field("progressFanout")
    """``"sqs"`` (one progress queue, one hub) or ``"sns"`` (an SNS FIFO topic, one queue per
    hub instance); ``progress_topic_arn`` implies ``"sns"``."""
    progress_topic_arn: str | None = _sqs_field("progressTopicArn")
    instance_stale_sec: int = _sqs_field("instanceStaleSec")

    @property
    def fanout(self) -> bool:
        """Whether progress goes through the SNS FIFO topic to every hub instance."""
        return self.progress_fanout == "sns" or self.progress_topic_arn is not None


def _branch_name(value: str) -> str:
    try:
        return sanitize_branch(value)
    except ConfigError as exc:
        raise ConfigError(f"invalid configuration: branch: {exc}") from None


def _secrets(value: object) -> object:
    # A list (from code) is kept as a tuple so the frozen config stays hashable.
    return tuple(value) if isinstance(value, list) else value


@attrs.frozen
class TransflowConfig:
    """A project's configuration, resolved from the file and the environment.

    Every value is checked when the class is built; a bad one raises :class:`ConfigError`.
    """

    project: str = attrs.field(validator=_validator(_project, "project"))
    sqs: SqsConfig = attrs.field(
        factory=SqsConfig, validator=attrs.validators.instance_of(SqsConfig)
    )
    branch: str = attrs.field(default="main", converter=_branch_name)
    region: str | None = attrs.field(default=None, validator=_validator(_region, "region"))
    stream_secret: str | tuple[str, ...] | None = attrs.field(
        default=None,
        repr=False,
        converter=_secrets,
        validator=_validator(_stream_secret_rule, ENV_STREAM_SECRET),
    )
    """The key stream tokens are signed with, or several (the first signs, all verify, for
    rotation): from ``TRANSFLOW_STREAM_SECRET`` only (several separated by commas), never
    the file (a committed file would publish it). Pass it as it is to the SSE apps'
    ``secret=`` and ``create_upload(stream_secret=)``."""

    @property
    def stream_secrets(self) -> tuple[str, ...]:
        """Every stream secret, the signing one first (empty when none is set)."""
        if self.stream_secret is None:
            return ()
        return (self.stream_secret,) if isinstance(self.stream_secret, str) else self.stream_secret

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
        problems.append(f"sqs: must be an object, not {type_name(sqs_raw)}")
        sqs_raw = {}

    sqs_values = _sqs_values(sqs_raw, env, problems)
    if sqs_raw.get("progressFanout") == "sqs" and sqs_values.get("progress_topic_arn"):
        problems.append(
            "sqs.progressTopicArn is set but sqs.progressFanout is 'sqs': set progressFanout "
            "to 'sns' (or remove it) to publish progress to the topic"
        )
    project, branch, region = _identity(raw, env, problems)
    stream_secret = _stream_secret(raw, env, problems)
    if problems:
        raise ConfigError(f"invalid configuration ({source}): " + "; ".join(problems))
    return TransflowConfig(
        project=project,
        sqs=SqsConfig(**sqs_values),
        branch=branch,
        region=region,
        stream_secret=stream_secret,
    )


def _stream_secret(
    raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> str | tuple[str, ...] | None:
    if "streamSecret" in raw:
        problems.append(
            f"streamSecret: a secret does not belong in a file that is committed; remove it "
            f"and set {ENV_STREAM_SECRET} in the environment of each server"
        )
    text = env.get(ENV_STREAM_SECRET) or None
    # Several secrets (rotation) are separated by commas, which token_urlsafe never writes;
    # one secret is taken exactly as it is.
    secret: str | tuple[str, ...] | None = text
    if text is not None and "," in text:
        secret = tuple(part.strip() for part in text.split(","))
    problem = _stream_secret_rule(ENV_STREAM_SECRET, secret)
    if problem:
        problems.append(problem)
        return None
    return secret


def _sqs_values(
    sqs_raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}

    def take(option: _Option, where: str, value: object) -> None:
        problem = option.check(where, value)
        if problem:
            problems.append(problem)
        else:
            values[option.attribute] = value

    for option in _SQS_OPTIONS:
        take(option, f"sqs.{option.key}", sqs_raw.get(option.key, option.default))
    for var, key in _ENV_URLS.items():
        if env.get(var):
            take(_SQS_BY_KEY[key], var, env[var])
    text = env.get(ENV_BATCH_SIZE)
    if text:
        batch = _SQS_BY_KEY["batchSize"]
        # int() alone would take "1_0", " 4 " and non-ASCII digits.
        number: object = int(text) if _BATCH_TEXT.fullmatch(text) else text
        take(batch, ENV_BATCH_SIZE, number)
    return values


def _identity(
    raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> tuple[Any, Any, Any]:
    """project, branch and region, each from the environment first, then the file."""
    found = []
    region_var = "AWS_REGION" if env.get("AWS_REGION") else "AWS_DEFAULT_REGION"
    for var, key, default, check in (
        (ENV_PROJECT, "project", None, _project),
        (ENV_BRANCH, "branch", "main", _branch),
        (region_var, "region", None, _region),
    ):
        from_env = env.get(var)
        value = from_env or raw.get(key, default)
        if key == "project" and value is None:
            problems.append(
                f"project: required; set it in {CONFIG_FILENAME} or in the {ENV_PROJECT} "
                "environment variable"
            )
        else:
            problem = check(var if from_env else key, value)
            if problem:
                problems.append(problem)
        found.append(value)
    return found[0], found[1], found[2]


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
                "environment: run 'transflow init', pass --config PATH (load_config(path) "
                "in Python), or set the queue URLs in the environment"
            )
        file = candidate
    else:
        file = Path(path)
    try:
        # utf-8-sig: editors on Windows save a byte-order mark that json refuses.
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{file}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({exc})") from exc
    try:
        data = parse_json(text)
    except JsonTextError as exc:
        raise ConfigError(f"{file}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: must hold a JSON object, not {type_name(data)}")
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
    for option in _SQS_INTS.values():
        yield f"sqs.{option.key}", option.attribute, option.default, option.low, option.high
