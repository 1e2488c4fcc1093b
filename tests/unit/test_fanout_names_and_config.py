"""Fan-out mode's names (topic, instance queue prefix and names) and its config options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import ConfigError, load_config
from transflow._wire.naming import (
    INSTANCE_ID_CHARS,
    MAX_QUEUE_NAME,
    instance_queue_name,
    instance_queue_prefix,
    is_instance_queue,
    queue_names,
    topic_name,
)
from transflow.streaming.instances import new_instance_id

ARN = "arn:aws:sns:eu-west-1:123456789012:shop-main-progress.fifo"


def test_names_of_a_short_branch() -> None:
    assert topic_name("shop", "main") == "shop-main-progress.fifo"
    assert topic_name("shop", "main") == queue_names("shop", "main").progress
    prefix = instance_queue_prefix("shop", "main")
    assert prefix == "shop-main-progress-"
    name = instance_queue_name(prefix, "0123456789ab")
    assert name == "shop-main-progress-0123456789ab.fifo"
    assert is_instance_queue(prefix, name)


@given(
    project=st.from_regex(r"[a-z][a-z0-9]{0,39}", fullmatch=True),
    branch=st.from_regex(r"[a-z0-9][a-z0-9-]{0,120}", fullmatch=True),
)
def test_every_instance_queue_name_fits_and_is_recognised(project: str, branch: str) -> None:
    prefix = instance_queue_prefix(project, branch)
    name = instance_queue_name(prefix, new_instance_id())
    assert len(name) <= MAX_QUEUE_NAME
    assert is_instance_queue(prefix, name)
    assert len(topic_name(project, branch)) <= 256


@pytest.mark.parametrize(
    "name",
    [
        "shop-main-progress.fifo",  # the shared progress queue
        "shop-main-progress-processing.fifo",  # branch "main-progress"'s processing queue
        "shop-main-progress-0123456789AB.fifo",  # not lowercase hex
        "shop-main-progress-0123456789a.fifo",  # one character short
        "shop-main-progress-0123456789abc.fifo",  # one too many
        "shop-main-progress-0123456789ab",  # not FIFO
        "other-main-progress-0123456789ab.fifo",
    ],
)
def test_what_is_not_an_instance_queue(name: str) -> None:
    assert not is_instance_queue("shop-main-progress-", name)


@pytest.mark.parametrize("instance", ["", "xyz", "0123456789AB", "0" * (INSTANCE_ID_CHARS + 1)])
def test_a_bad_instance_id_is_refused(instance: str) -> None:
    with pytest.raises(ConfigError, match="instance_queue_prefix"):
        instance_queue_name("shop-main-progress-", instance)


def test_a_prefix_too_long_for_a_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most 80"):
        instance_queue_name("p" * 70, "0123456789ab")


def load(tmp_path: Path, sqs: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "transflow.config.json"
    path.write_text(json.dumps({"project": "shop", "sqs": sqs}))
    return load_config(path, env=env or {})


def test_fanout_is_off_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, {})
    assert (config.sqs.progress_fanout, config.sqs.fanout) == ("sqs", False)
    assert config.sqs.instance_stale_sec == 300
    assert config.topic_name == "shop-main-progress.fifo"
    assert config.instance_queue_prefix == "shop-main-progress-"


def test_fanout_options(tmp_path: Path) -> None:
    config = load(tmp_path, {"progressFanout": "sns", "instanceStaleSec": 60})
    assert config.sqs.fanout
    assert config.sqs.instance_stale_sec == 60
    named = load(tmp_path, {"progressTopicArn": ARN})
    assert named.sqs.fanout  # an ARN implies fan-out mode
    assert named.topic_name == "shop-main-progress.fifo"
    from_env = load(tmp_path, {}, {"SNS_PROGRESS_TOPIC_ARN": ARN})
    assert from_env.sqs.progress_topic_arn == ARN
    assert from_env.sqs.fanout


@pytest.mark.parametrize(
    ("sqs", "match"),
    [
        ({"progressFanout": "kafka"}, "progressFanout"),
        ({"progressFanout": True}, "progressFanout"),
        ({"progressTopicArn": "arn:aws:sns:eu-west-1:123456789012:plain"}, "SNS FIFO topic"),
        ({"progressTopicArn": "arn:aws:sqs:eu-west-1:123456789012:q.fifo"}, "SNS FIFO topic"),
        ({"instanceStaleSec": 59}, "instanceStaleSec"),
        ({"instanceStaleSec": 86_401}, "instanceStaleSec"),
        ({"instanceStaleSec": "300"}, "instanceStaleSec"),
        ({"progressFanout": "sqs", "progressTopicArn": ARN}, "progressFanout"),
    ],
)
def test_bad_fanout_options_are_refused_by_name(
    tmp_path: Path, sqs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, sqs)
