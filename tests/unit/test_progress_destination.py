"""ProgressDestination: where progress goes, from the configuration, with its limits."""

from __future__ import annotations

import pytest

from transflow import (
    ConfigError,
    ProgressDestination,
    ProgressQueue,
    ProgressTopic,
    SqsConfig,
    TransflowConfig,
)

ARN = "arn:aws:sns:us-east-1:123456789012:p-main-progress.fifo"
URL = "https://sqs.us-east-1.amazonaws.com/123456789012/p-main-progress.fifo"


def config(**sqs: object) -> TransflowConfig:
    return TransflowConfig(project="p", branch="main", sqs=SqsConfig(**sqs))  # type: ignore[arg-type]


def test_the_queue_carries_the_configured_size_for_messages_and_batches() -> None:
    where = ProgressDestination.from_config(
        config(progress_queue_url=URL, max_message_bytes=1_048_576)
    )
    assert where == ProgressQueue(URL, max_message_bytes=1_048_576)
    assert (where.max_message_bytes, where.max_batch_bytes, where.max_entries) == (
        1_048_576,
        1_048_576,
        10,
    )


def test_the_topic_carries_sns_limits_whatever_the_queues_allow() -> None:
    where = ProgressDestination.from_config(
        config(progress_fanout="sns", max_message_bytes=1_048_576), topic_arn=ARN
    )
    assert where == ProgressTopic(ARN)
    assert (where.max_message_bytes, where.max_batch_bytes, where.max_entries) == (
        262_144,
        262_144,
        10,
    )


def test_the_config_address_comes_first_and_a_missing_one_is_a_config_error() -> None:
    assert ProgressDestination.from_config(
        config(progress_topic_arn=ARN), topic_arn="arn:other"
    ) == ProgressTopic(ARN)
    assert ProgressDestination.from_config(config(), queue_url=URL) == ProgressQueue(URL)
    with pytest.raises(ConfigError, match="progressTopicArn"):
        ProgressDestination.from_config(config(progress_fanout="sns"), queue_url=URL)
    with pytest.raises(ConfigError, match="progressQueueUrl"):
        ProgressDestination.from_config(config())
    with pytest.raises(TypeError, match="ProgressQueue or ProgressTopic"):
        ProgressDestination()
