"""The hub lease on the shared progress queue (issue 20 item 1): a second hub on the same
queue consumes nothing, logs an ERROR at start and refuses its subscribers with the reason;
it takes over when the holder stops (at once) or dies (after the lease time, by its own
clock); a holder whose tag another hub overwrote steps down."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import botocore.exceptions
import pytest

from tests.support.streaming import fifo_queue, wait_until
from transflow import ProgressHub, ProgressPublisher, ProgressQueue
from transflow.errors import HubLeaseHeldError, SubscriptionClosedError
from transflow.streaming.lease import LEASE_TAG

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from transflow.cli.local import LocalAws

LEASE_SEC = 1.5  # a beat every half second


def hub(sqs: SQSClient, url: str) -> ProgressHub:
    return ProgressHub(sqs, ProgressQueue(url), wait_time_seconds=1, lease_sec=LEASE_SEC)


def publish(sqs: SQSClient, url: str, upload: str, count: int) -> list[int]:
    publisher = ProgressPublisher(ProgressQueue(url), sqs=sqs, flush_after=0.05)
    with publisher.stream(upload, "main") as stream:
        seqs = [stream.emit("progress", percent=i).seq for i in range(count - 1)]
        seqs.append(stream.emit("done").seq)
    return [s for s in seqs if s is not None]


def seqs_of(sub: object, count: int) -> list[int]:
    got: list[int] = []
    while len(got) < count:
        event = sub.get(10)  # type: ignore[attr-defined]
        assert event is not None, f"only {got}"
        got.append(event.seq)
    return got


def test_a_second_hub_on_the_queue_refuses_loudly_and_takes_over_when_the_first_stops(
    sqs: SQSClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = fifo_queue(sqs, "lease-progress.fifo")
    caplog.set_level(logging.ERROR, logger="transflow.streaming.hub")
    first = hub(sqs, url).start()
    second = hub(sqs, url).start()
    try:
        assert (first.stats().lease, second.stats().lease) == ("held", "standby")
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "another progress hub" in errors[0]
        assert "sqs.progressFanout to 'sns'" in errors[0]
        with pytest.raises(HubLeaseHeldError, match="serves no streams"):
            second.subscribe("upload:main:u")
        # The holder gets every event: the one on standby reads nothing.
        sub = first.subscribe("upload:main:u")
        sent = publish(sqs, url, "u", 12)
        assert seqs_of(sub, 12) == sent
        assert second.stats().poller.receive_calls == 0
        assert first.stats().gaps == 0

        first.stop(5)  # gives the lease up: the other need not wait for it to expire
        wait_until(lambda: second.stats().lease == "held", 10, "the take-over")
        sub = second.subscribe("upload:main:v")
        sent = publish(sqs, url, "v", 5)
        assert seqs_of(sub, 5) == sent
    finally:
        first.stop(5)
        second.stop(5)
    assert LEASE_TAG not in sqs.list_queue_tags(QueueUrl=url).get("Tags", {})


def test_the_lease_of_a_dead_holder_is_taken_once_its_tag_stopped_changing(
    sqs: SQSClient,
) -> None:
    url = fifo_queue(sqs, "lease-dead-progress.fifo")
    # A holder killed with -9 never gave its lease up; its clock is of no concern to us.
    sqs.tag_queue(QueueUrl=url, Tags={LEASE_TAG: "elsewhere:4242:deadbeef 17"})
    late = hub(sqs, url).start()
    try:
        assert late.stats().lease == "standby"
        with pytest.raises(HubLeaseHeldError, match="elsewhere:4242:deadbeef"):
            late.subscribe("upload:main:u")
        wait_until(lambda: late.stats().lease == "held", 10, "the take-over")
        sub = late.subscribe("upload:main:u")
        sent = publish(sqs, url, "u", 3)
        assert seqs_of(sub, 3) == sent
    finally:
        late.stop(5)


def test_a_holder_whose_lease_was_taken_steps_down_and_closes_its_streams(
    sqs: SQSClient,
) -> None:
    url = fifo_queue(sqs, "lease-lost-progress.fifo")
    holder = hub(sqs, url).start()
    try:
        sub = holder.subscribe("upload:main:u")
        # Two hubs that started in the same instant may both have read the lease as
        # theirs; the later write won.
        sqs.tag_queue(QueueUrl=url, Tags={LEASE_TAG: "other:1:cafe 1"})
        wait_until(lambda: holder.stats().lease == "standby", 10, "stepping down")
        with pytest.raises(SubscriptionClosedError, match="lost the progress queue's lease"):
            sub.get(5)
        with pytest.raises(HubLeaseHeldError, match="other:1:cafe"):
            holder.subscribe("upload:main:u")
    finally:
        holder.stop(5)
    # Not ours any more: stop leaves the other's tag alone.
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"][LEASE_TAG] == "other:1:cafe 1"


def test_a_hub_refused_the_tag_says_so_and_reads_unleased(
    aws: LocalAws, caplog: pytest.LogCaptureFixture
) -> None:
    sqs = aws.sqs()  # its own client: the refusal below stays on it

    def deny(**_: object) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": "not authorized"}}
        raise botocore.exceptions.ClientError(error, "ListQueueTags")  # type: ignore[arg-type]

    url = fifo_queue(sqs, "lease-denied-progress.fifo")
    sqs.meta.events.register("before-call.sqs.ListQueueTags", deny)
    caplog.set_level(logging.ERROR, logger="transflow.streaming.hub")
    unleased = hub(sqs, url).start()
    try:
        assert unleased.stats().lease == "unleased"
        # Only this queue's: a hub another test left on this worker may log its own.
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.ERROR and url in r.getMessage()
        ]
        assert len(errors) == 1
        assert "AccessDenied" in errors[0]
        assert "sqs:ListQueueTags, sqs:TagQueue and sqs:UntagQueue" in errors[0]
        sub = unleased.subscribe("upload:main:u")
        sent = publish(sqs, url, "u", 3)
        assert seqs_of(sub, 3) == sent
    finally:
        unleased.stop(5)
