"""ensure_queues, describe_queues and delete_queues on the moto server."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING

import pytest

from transflow import (
    ProvisionError,
    ProvisionWarning,
    QueueNotFoundError,
    QueueUrls,
    SqsConfig,
    TransflowConfig,
    count_requests,
    ensure_queues,
    ensure_queues_report,
)
from transflow.ops.provision import delete_queues, describe_queues, resolve_queue_urls

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

CONFIG = TransflowConfig(
    project="shop",
    branch="feature-checkout",
    sqs=SqsConfig(visibility_timeout_sec=120, max_receive_count=2, retention_sec=86_400),
)


def attributes(sqs: SQSClient, url: str) -> dict[str, str]:
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {str(k): v for k, v in found.items()}


def test_ensure_creates_the_three_queues_as_the_spec_says(sqs: SQSClient) -> None:
    with count_requests(sqs) as counter:
        urls = ensure_queues(sqs, CONFIG)

    assert isinstance(urls, QueueUrls)
    assert urls.processing.endswith("/shop-feature-checkout-processing.fifo")
    assert urls.progress.endswith("/shop-feature-checkout-progress.fifo")
    assert urls.dlq.endswith("/shop-feature-checkout-dlq.fifo")
    assert counter.count("CreateQueue") == 3

    processing = attributes(sqs, urls.processing)
    dlq = attributes(sqs, urls.dlq)
    progress = attributes(sqs, urls.progress)
    assert processing["FifoQueue"] == progress["FifoQueue"] == dlq["FifoQueue"] == "true"
    assert processing["VisibilityTimeout"] == "120"
    assert processing["MessageRetentionPeriod"] == progress["MessageRetentionPeriod"] == "86400"
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    redrive = json.loads(processing["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 2
    for url in (urls.processing, urls.progress, urls.dlq):
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {
            "project": "shop",
            "branch": "feature-checkout",
            "managed-by": "transflow",
        }


def test_ensure_twice_changes_nothing(sqs: SQSClient) -> None:
    first = ensure_queues_report(sqs, CONFIG)
    with count_requests(sqs) as counter:
        second = ensure_queues_report(sqs, CONFIG)

    assert first.created == (
        "shop-feature-checkout-dlq.fifo",
        "shop-feature-checkout-processing.fifo",
        "shop-feature-checkout-progress.fifo",
    )
    assert second.urls == first.urls
    assert second.created == ()
    assert second.changes == ()
    assert not second.changed
    assert counter.count("CreateQueue") == 0
    assert counter.count("TagQueue") == 0
    # moto keeps no RedriveAllowPolicy; ensure says so instead of "changing" it every run.
    assert second.ignored == ("shop-feature-checkout-dlq.fifo: RedriveAllowPolicy",)
    assert second.warnings == ()


def test_drifted_attributes_and_tags_are_corrected_and_reported(sqs: SQSClient) -> None:
    urls = ensure_queues(sqs, CONFIG)
    sqs.set_queue_attributes(
        QueueUrl=urls.processing,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": attributes(sqs, urls.dlq)["QueueArn"], "maxReceiveCount": 9}
            ),
        },
    )
    sqs.set_queue_attributes(QueueUrl=urls.progress, Attributes={"MessageRetentionPeriod": "60"})
    sqs.untag_queue(QueueUrl=urls.dlq, TagKeys=["managed-by"])

    report = ensure_queues_report(sqs, CONFIG)

    changed = {(c.queue, c.attribute): (c.before, c.after) for c in report.changes}
    assert changed[("shop-feature-checkout-processing.fifo", "VisibilityTimeout")] == ("30", "120")
    assert ("shop-feature-checkout-processing.fifo", "RedrivePolicy") in changed
    assert changed[("shop-feature-checkout-progress.fifo", "MessageRetentionPeriod")] == (
        "60",
        "86400",
    )
    assert changed[("shop-feature-checkout-dlq.fifo", "tag:managed-by")] == (None, "transflow")
    assert report.created == ()
    assert attributes(sqs, urls.processing)["VisibilityTimeout"] == "120"
    assert (
        int(json.loads(attributes(sqs, urls.processing)["RedrivePolicy"])["maxReceiveCount"]) == 2
    )
    assert sqs.list_queue_tags(QueueUrl=urls.dlq)["Tags"]["managed-by"] == "transflow"
    assert not ensure_queues_report(sqs, CONFIG).changes


def test_an_existing_standard_queue_is_a_clear_error(sqs: SQSClient) -> None:
    # A queue SQS cannot turn into a FIFO queue (moto lets a .fifo name be a standard queue).
    sqs.create_queue(QueueName="shop-feature-checkout-processing.fifo")
    with pytest.raises(ProvisionError, match="not a FIFO queue") as caught:
        ensure_queues(sqs, CONFIG)
    assert "transflow queues delete" in str(caught.value)


def test_short_visibility_for_the_function_timeout_warns(sqs: SQSClient) -> None:
    with pytest.warns(ProvisionWarning, match="6 x the function timeout of 60s"):
        report = ensure_queues_report(sqs, CONFIG, function_timeout_sec=60)
    assert any("360s" in w for w in report.warnings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet = ensure_queues_report(sqs, CONFIG, function_timeout_sec=20)
    assert not any("function timeout" in w for w in quiet.warnings)
    assert not any("function timeout" in str(w.message) for w in caught)


def test_the_redrive_policy_moves_a_poison_message_to_the_dlq(sqs: SQSClient) -> None:
    urls = ensure_queues(sqs, CONFIG)
    sqs.send_message(
        QueueUrl=urls.processing,
        MessageBody='{"uploadId": "u1"}',
        MessageGroupId="u1",
        MessageDeduplicationId="u1:1",
    )
    for _ in range(CONFIG.sqs.max_receive_count):
        # Received and failed: back through visibility (0 here, to skip the wait).
        got = sqs.receive_message(QueueUrl=urls.processing, VisibilityTimeout=0)["Messages"]
        assert len(got) == 1
    assert (
        sqs.receive_message(QueueUrl=urls.processing, VisibilityTimeout=0).get("Messages") is None
    )
    moved = sqs.receive_message(QueueUrl=urls.dlq, MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in moved] == ['{"uploadId": "u1"}']
    assert moved[0]["Attributes"]["MessageGroupId"] == "u1"


def test_describe_resolve_and_delete(sqs: SQSClient) -> None:
    with pytest.raises(QueueNotFoundError, match="transflow queues ensure"):
        resolve_queue_urls(sqs, CONFIG)
    assert [d.url for d in describe_queues(sqs, CONFIG)] == [None, None, None]

    urls = ensure_queues(sqs, CONFIG)
    assert resolve_queue_urls(sqs, CONFIG) == urls
    described = {d.role: d for d in describe_queues(sqs, CONFIG)}
    assert described["processing"].attributes["VisibilityTimeout"] == "120"
    assert described["dlq"].tags["managed-by"] == "transflow"

    deleted = delete_queues(sqs, CONFIG)
    assert deleted == (
        "shop-feature-checkout-processing.fifo",
        "shop-feature-checkout-progress.fifo",
        "shop-feature-checkout-dlq.fifo",
    )
    assert delete_queues(sqs, CONFIG) == ()
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_configured_urls_win_over_lookup(sqs: SQSClient) -> None:
    urls = ensure_queues(sqs, CONFIG)
    other = sqs.create_queue(QueueName="elsewhere.fifo", Attributes={"FifoQueue": "true"})
    config = TransflowConfig(
        project="shop", branch="feature-checkout", sqs=SqsConfig(queue_url=other["QueueUrl"])
    )
    resolved = resolve_queue_urls(sqs, config)
    assert resolved.processing == other["QueueUrl"]
    assert resolved.dlq == urls.dlq
