"""Every option of the processor, the bridge, the webhook sender and the progress publisher is
checked when the object is made, and a wrong one raises ConfigError naming it. No AWS: the
clients are never called."""

from __future__ import annotations

import math
from typing import Any

import pytest

from transflow import (
    ConfigError,
    GroupingBridge,
    JobProcessor,
    ProgressPublisher,
    ProgressQueue,
    TemplateRegistry,
    WebhookSender,
)

CLIENT: Any = object()  # never called while options are checked


def _processor(**options: Any) -> JobProcessor:
    return JobProcessor(
        TemplateRegistry(),
        s3_client=CLIENT,
        upload_bucket="uploads",
        sqs_client=CLIENT,
        output_bucket="out",
        **{"progress": ProgressQueue("https://q"), **options},
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("time_margin", -5),
        ("time_margin", math.nan),
        ("time_margin", "30"),
        ("flush_after", -0.1),
        ("flush_after", math.inf),
        ("max_receive_count", 0),
        ("max_receive_count", 1_001),
        ("max_receive_count", True),
        ("work_dir", ""),
        ("progress", "https://q"),
        ("retry_policy", 3),
        # None is the default sender, made when a template with a webhook needs it.
        ("webhooks", "https://hooks.example.com/"),
    ],
)
def test_processor_options_are_refused(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"JobProcessor {name} must be"):
        _processor(**{name: value})


def test_processor_registry_must_be_a_registry() -> None:
    with pytest.raises(ConfigError, match="registry"):
        JobProcessor(
            {},  # type: ignore[arg-type]
            s3_client=CLIENT,
            upload_bucket="uploads",
            sqs_client=CLIENT,
            progress=ProgressQueue("https://q"),
        )


def test_processor_accepts_its_defaults_and_edges() -> None:
    processor = _processor(
        time_margin=0,
        max_receive_count=1,
        progress=ProgressQueue("https://q", max_message_bytes=1_048_576),
    )
    assert processor.time_margin == 0
    assert processor.publisher.destination.max_message_bytes == 1_048_576


def _bridge(**options: Any) -> GroupingBridge:
    options.setdefault("upload_bucket", "uploads")
    return GroupingBridge(
        CLIENT, CLIENT, queue_url=options.pop("queue_url", "https://q"), **options
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("head_concurrency", 0),
        ("head_concurrency", 257),
        ("head_concurrency", 2.5),
        ("max_message_bytes", 0),
        ("queue_url", ""),
        ("claim_bucket", ""),
        ("claim_prefix", ""),
        ("retry", None),
        ("upload_bucket", None),
        ("upload_bucket", ""),
    ],
)
def test_bridge_options_are_refused(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"GroupingBridge {name} must be"):
        _bridge(**{name: value})


def test_bridge_accepts_the_edges() -> None:
    assert _bridge(head_concurrency=1).head_concurrency == 1
    assert _bridge(head_concurrency=256, claim_bucket="c").head_concurrency == 256


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", 0),
        ("attempts", 0),
        ("initial_wait", -1),
        ("max_wait", math.nan),
        ("deadline", 0),
    ],
)
def test_webhook_sender_options_are_refused(name: str, value: object) -> None:
    options: dict[str, Any] = {name: value}
    with pytest.raises(ConfigError, match=rf"WebhookSender {name} must be"):
        WebhookSender(**options)


def test_webhook_waits_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="max_wait must be at least initial_wait"):
        WebhookSender(initial_wait=2, max_wait=1)
    assert WebhookSender(initial_wait=1, max_wait=1).attempts == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flush_after", -1),
        ("policy", object()),
        ("clock", 1.0),
    ],
)
def test_publisher_options_are_refused(name: str, value: object) -> None:
    options: dict[str, Any] = {name: value}
    with pytest.raises(ConfigError, match=rf"ProgressPublisher {name} must be"):
        ProgressPublisher(ProgressQueue("https://q"), sqs=CLIENT, **options)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("url", ""),
        ("max_message_bytes", 0),
        ("max_message_bytes", 2_000_000),
    ],
)
def test_progress_queue_options_are_refused(name: str, value: object) -> None:
    options: dict[str, Any] = {"url": "https://q", name: value}
    with pytest.raises(ConfigError, match=rf"ProgressQueue {name} must be"):
        ProgressQueue(**options)
