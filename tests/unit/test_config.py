"""load_config: the vectors, environment overrides, ranges, Redis and unknown keys."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.vectors import DATA
from transflow import (
    ConfigError,
    SqsConfig,
    TransflowConfig,
    UnknownConfigKeyWarning,
    load_config,
)
from transflow.config import config_keys

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/myapp-main-processing.fifo"


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "transflow.config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_sqs_only_vector_loads() -> None:
    config = load_config(DATA / "config-sqs-only.json", env={})
    assert config.project == "myapp"
    assert config.region == "us-east-1"
    assert config.branch == "main"
    assert config.sqs.visibility_timeout_sec == 960
    assert config.sqs.max_receive_count == 3
    assert config.sqs.batch_size == 10
    assert config.sqs.retention_sec == 14 * 24 * 3600
    assert config.sqs.max_message_bytes == 262_144
    assert config.queue_names.processing == "myapp-processing.fifo"
    assert config.queue_names.progress == "myapp-progress.fifo"
    assert config.queue_names.dlq == "myapp-main-dlq.fifo"


def test_the_invalid_batch_vector_names_key_value_and_range() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / "config-invalid-batch.json", env={})
    assert "sqs.batchSize: 11 is out of range; allowed 1 to 10" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "env"),
    [
        ("config-legacy-redis.json", {}),
        ("config-sqs-only.json", {"REDIS_URL": "redis://localhost:6379"}),
    ],
)
def test_redis_is_refused_with_migration_steps(source: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / source, env=env)
    message = str(caught.value)
    assert "redis" in message
    assert "'sqs' section is now required" in message
    assert "1. replace the 'redis' section" in message
    assert "REDIS_URL" in message


def test_a_config_without_sqs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'sqs' section is required"):
        load_config(write(tmp_path, {"project": "myapp"}), env={})


def test_defaults_fill_an_empty_sqs_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"project": "myapp", "sqs": {}}), env={})
    assert config.sqs.visibility_timeout_sec == 960
    assert config.queue_names.processing == "myapp-main-processing.fifo"
    assert config.region is None


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"project": "myapp", "branch": "main", "region": "eu-west-1", "sqs": {}})
    env = {
        "SQS_QUEUE_URL": QUEUE_URL,
        "SQS_PROGRESS_QUEUE_URL": "http://localhost:4566/000000000000/progress.fifo",
        "SQS_DLQ_URL": "http://localhost:4566/000000000000/dlq.fifo",
        "MAX_BATCH_SIZE": "4",
        "AWS_REGION": "us-west-2",
        "AWS_DEFAULT_REGION": "ap-south-1",
        "TRANSFLOW_PROJECT": "other",
        "TRANSFLOW_BRANCH": "Feature/X",
    }
    config = load_config(path, env=env)
    assert config.sqs.queue_url == QUEUE_URL
    assert config.sqs.progress_queue_url == "http://localhost:4566/000000000000/progress.fifo"
    assert config.sqs.dlq_url == "http://localhost:4566/000000000000/dlq.fifo"
    assert config.sqs.batch_size == 4
    assert config.region == "us-west-2"
    assert config.project == "other"
    assert config.branch == "feature-x--02cc1910"
    env.pop("AWS_REGION")
    assert load_config(path, env=env).region == "ap-south-1"


@pytest.mark.parametrize("value", ["0", "11", "ten"])
def test_a_bad_max_batch_size_names_the_variable(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, {"project": "myapp", "sqs": {}})
    with pytest.raises(ConfigError, match="MAX_BATCH_SIZE"):
        load_config(path, env={"MAX_BATCH_SIZE": value})


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"sqs": {"visibilityTimeoutSec": 0, "maxReceiveCount": "3", "queueName": "plain"}},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert "sqs.visibilityTimeoutSec: 0 is out of range; allowed 1 to 43200" in message
    assert "sqs.maxReceiveCount: must be an integer from 1 to 1000, not '3'" in message
    assert "sqs.queueName: 'plain' is not a FIFO queue name" in message
    assert "project: required" in message


def test_unknown_keys_warn_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, {"project": "myapp", "sqs": {"batchSise": 5}, "extra": 1})
    with pytest.warns(UnknownConfigKeyWarning) as warned:
        load_config(path, env={})
    messages = [str(w.message) for w in warned]
    assert any("'sqs.batchSise'" in m and "did you mean 'batchSize'" in m for m in messages)
    assert any("'extra'" in m for m in messages)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{", "not valid JSON"), ("[]", "must hold a JSON object"), ("\xff", "cannot be read")],
)
def test_a_broken_file_is_a_config_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "transflow.config.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(ConfigError, match=problem):
        load_config(path, env={})


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.json", env={})


def test_the_working_directory_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"project": "cwdapp", "sqs": {}})
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).project == "cwdapp"


def test_without_a_file_the_environment_alone_configures_a_lambda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no transflow\.config\.json"):
        load_config(env={})
    config = load_config(env={"SQS_QUEUE_URL": QUEUE_URL, "TRANSFLOW_PROJECT": "lambdaapp"})
    assert config.sqs.queue_url == QUEUE_URL
    assert config.project == "lambdaapp"


@given(
    key=st.sampled_from([k for k, *_ in config_keys()]),
    value=st.integers(min_value=-(2**40), max_value=2**40) | st.text() | st.booleans(),
)
def test_any_numeric_value_is_accepted_in_range_or_refused_by_name(key: str, value: Any) -> None:
    _, attribute, _, low, high = next(k for k in config_keys() if k[0] == key)
    raw = {"project": "p", "sqs": {key.split(".")[1]: value}}
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), raw)
        in_range = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        if in_range:
            assert getattr(load_config(path, env={}).sqs, attribute) == value
        else:
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                load_config(path, env={})


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "transflow.config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"project": "bom", "sqs": {}}).encode())
    assert load_config(path, env={}).project == "bom"


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        (QUEUE_URL, True),
        ("http://127.0.0.1:5000/123456789012/shop-main-progress.fifo", True),
        ("http://localhost:9324/000000000000/x.fifo", True),
        # LocalStack's three forms: path-style, its sqs.{region} host, and the legacy one.
        ("http://localhost:4566/queue/us-east-1/000000000000/shop-main-progress.fifo", True),
        ("http://127.0.0.1:4566/queue/eu-west-1/000000000000/x.fifo", True),
        ("http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/x.fifo", True),
        ("http://localhost:4566/000000000000/shop-main-progress.fifo", True),
        ("http://localhost:4566/queue/us-east-1/000000000000/x", False),
        ("http://localhost:4566/queue/US EAST/000000000000/x.fifo", False),
        ("http://localhost:4566/queue/us-east-1/extra/000000000000/x.fifo", False),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/myapp-processing", False),
        ("http://q/processing.fifo", False),
        ("sqs.us-east-1.amazonaws.com/123456789012/a.fifo", False),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/a b.fifo", False),
        ("https://host/123/" + "a" * 80 + ".fifo", False),
        ("ftp://host/123/a.fifo", False),
    ],
)
@pytest.mark.parametrize("source", ["file", "env"])
def test_queue_urls_must_be_fifo_queue_urls(
    tmp_path: Path, url: str, accepted: bool, source: str
) -> None:
    sqs = {"progressQueueUrl": url} if source == "file" else {}
    path = write(tmp_path, {"project": "myapp", "sqs": sqs})
    env = {"SQS_PROGRESS_QUEUE_URL": url} if source == "env" else {}
    if accepted:
        assert load_config(path, env=env).sqs.progress_queue_url == url
        return
    where = "sqs.progressQueueUrl" if source == "file" else "SQS_PROGRESS_QUEUE_URL"
    with pytest.raises(ConfigError, match=rf"{where}: .* is not a FIFO queue URL"):
        load_config(path, env=env)


@pytest.mark.parametrize("branch", ["功能", "!!!", "", "/"])
def test_a_branch_with_nothing_left_after_sanitising_is_a_config_error(
    tmp_path: Path, branch: str
) -> None:
    path = write(tmp_path, {"project": "myapp", "branch": branch, "sqs": {}})
    with pytest.raises(ConfigError, match=r"branch: branch .* has no letters"):
        load_config(path, env={})
    if branch:
        ok = write(tmp_path, {"project": "myapp", "sqs": {}})
        with pytest.raises(ConfigError, match="TRANSFLOW_BRANCH: branch"):
            load_config(ok, env={"TRANSFLOW_BRANCH": branch})
    with pytest.raises(ConfigError, match="has no letters"):
        TransflowConfig(project="myapp", branch=branch)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"project": "p", "sqs": {"batchSize": ' + "9" * 5_000 + "}}", "more than"),
        ('{"project": "p", "sqs": {"batchSize": 1' + "0" * 4_000 + "}}", "out of range"),
        ('{"sqs": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"project": "p", "sqs": {"batchSize": NaN}}', "NaN is not JSON"),
        ('{"project": "p", "sqs": {"batchSize": 2.0}}', "must be an integer"),
        ('{"project": "p", "sqs": []}', "sqs: must be an object, not an array"),
        ('{"project": "p", "region": "Mars", "sqs": {}}', "region: 'Mars' is not an AWS region"),
        ('{"project": "p", "sqs": {"queueName": "x"}}', "sqs.queueName: 'x' is not a FIFO"),
        ('"just text"', "must hold a JSON object, not a string"),
    ],
)
def test_unreasonable_config_files_are_config_errors(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "transflow.config.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_config(path, env={})
    assert len(str(_error(path))) < 2_000  # values are shown cut, never whole


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return caught.value


@pytest.mark.parametrize("value", ["1_0", " 4", "٣", "1" * 5_000, "-1"])
def test_max_batch_size_takes_plain_ascii_digits_only(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, {"project": "myapp", "sqs": {}})
    with pytest.raises(ConfigError, match="MAX_BATCH_SIZE"):
        load_config(path, env={"MAX_BATCH_SIZE": value})


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: SqsConfig(batch_size=11), "sqs.batchSize: 11 is out of range"),
        (lambda: SqsConfig(batch_size=True), "sqs.batchSize: must be an integer"),
        (lambda: SqsConfig(queue_url="http://q"), "sqs.queueUrl: 'http://q' is not a FIFO"),
        (lambda: SqsConfig(dlq_name="dlq"), "sqs.dlqName: 'dlq' is not a FIFO queue name"),
        (lambda: TransflowConfig(project="my app"), "project: 'my app' may only hold"),
        (lambda: TransflowConfig(project="p", region="us east"), "region: 'us east' is not"),
        (lambda: TransflowConfig(project="p", branch="!!!"), "branch: branch '!!!' has no"),
        (lambda: TransflowConfig(project="p", stream_secret="short"), "TRANSFLOW_STREAM_SECRET: "),
    ],
)
def test_the_classes_check_every_option_when_built(build: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        build()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["main", "us-east-1", QUEUE_URL, "x.fifo", "my-app"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([k for k, *_ in config_keys()] + ["queueUrl", "dlqName"])
            | st.sampled_from(["project", "branch", "region", "sqs", "$schema"])
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=100, deadline=None)
@given(document=json_values | st.dictionaries(st.just("sqs"), json_values), env_branch=st.text())
def test_any_json_file_loads_or_is_a_config_error(document: Any, env_branch: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "transflow.config.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        env = {"TRANSFLOW_PROJECT": "p", "TRANSFLOW_BRANCH": env_branch}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownConfigKeyWarning)
                config: TransflowConfig | str = load_config(path, env=env)
        except ConfigError as exc:
            config = str(exc)
    if isinstance(config, str):
        assert config.startswith(("invalid configuration", folder, "redis is no longer"))
    else:
        assert config.queue_names.processing.endswith(".fifo")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_a_config_error(body: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "transflow.config.json"
        path.write_bytes(body)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownConfigKeyWarning)
                load_config(path, env={"TRANSFLOW_PROJECT": "p"})
        except ConfigError:
            pass  # the property: nothing but a ConfigError escapes
