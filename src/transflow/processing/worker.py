"""The processing queue outside Lambda: a :class:`JobProcessor` behind a :class:`QueuePoller`.

Run it on ECS, EC2 or a laptop. Each message is handed to ``processor.process``; success
deletes it, failure returns it through visibility (so the queue's redrive policy counts the
attempt), a heartbeat keeps long jobs invisible, and SIGTERM drains gracefully: no new
receives, unstarted messages released, running jobs finished up to the drain timeout.

    processor = JobProcessor(registry, s3_client=s3, sqs_client=sqs, progress=ProgressQueue(url))
    worker = make_worker(processor, sqs, processing_queue_url, concurrency=4)
    run_worker(worker)   # blocks until SIGTERM / SIGINT
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from transflow._aws.poller import QueuePoller, RetryDelay, backoff_visibility, current_delivery
from transflow._wire.messages import ReceivedMessage
from transflow.processing.processor import JobProcessor

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["job_handler", "make_worker", "run_worker"]

DEFAULT_VISIBILITY_TIMEOUT = 60
"""Seconds a received job stays invisible between heartbeats. Short, so that the job of a
worker that died is picked up again within a minute; the heartbeat extends it while the job
runs, whatever the queue's own (longer, Lambda-oriented) visibility timeout."""


DEFAULT_DELETE_WINDOW = 0.5
"""Seconds a handled job's message may wait for the deletes (and progress sends) of the
jobs ending after it, while the queue is busy."""


def job_handler(processor: JobProcessor) -> Callable[[ReceivedMessage], None]:
    """The poller handler that runs one message through ``processor``, telling it how much
    time its delivery has left (so ``ctx.run`` can bound external tools) and whether the
    poller gave the delivery up or can no longer confirm its lease on the message (so a job
    whose heartbeats failed past the visibility timeout never completes behind another)."""

    def handle(message: ReceivedMessage) -> None:
        delivery = current_delivery()

        def remaining() -> float:
            left = delivery.remaining_time() if delivery is not None else None
            return math.inf if left is None else left

        processor.process(
            message,
            remaining_time=remaining,
            cancelled=delivery.cancelled.is_set if delivery is not None else None,
            lease_held=delivery.lease_held if delivery is not None else None,
        )

    return handle


def make_worker(
    processor: JobProcessor,
    sqs_client: SQSClient,
    queue_url: str,
    *,
    concurrency: int = 4,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    handler_timeout: float | None = None,
    wait_time_seconds: int = 20,
    drain_timeout: float = 30.0,
    retry_delay: RetryDelay | None = None,
    delete_window: float = DEFAULT_DELETE_WINDOW,
    max_in_flight: int | None = None,
) -> QueuePoller:
    """A poller on the processing queue that runs jobs through ``processor``.

    Build ``sqs_client`` with ``config=poller_client_config(concurrency)`` so heartbeats
    never wait behind the long poll. ``handler_timeout`` bounds one job (its message goes
    back through visibility when it is exceeded). A failed job becomes visible again after
    ``retry_delay(message)`` seconds (default: 1, 2, 4 … by receive count).

    The jobs' progress events join one queue (as in a Lambda batch): SendMessageBatch calls
    carry the events of up to ten uploads, and they are sent, at the latest, right before
    the messages of the jobs that queued them are deleted, in DeleteMessageBatch calls:
    a message is never deleted before its job's last events went. ``delete_window`` (at
    most a third of the visibility timeout) lets the deletes, and so the progress sends, of
    jobs that end close together go in the same calls (handled messages waiting for their
    delete take no room from new work). ``max_in_flight`` (default ``concurrency``) lets the
    worker receive more messages than it runs: fuller calls for short jobs, but messages
    waiting behind long jobs that another worker could have run."""
    publisher = processor.publisher
    return QueuePoller(
        sqs_client,
        queue_url,
        job_handler(processor),
        before_delete=publisher.flush_pending,
        scope=publisher.combined(),
        delete_window=min(delete_window, visibility_timeout / 3),
        gather_deletes=True,
        max_in_flight=max_in_flight,
        concurrency=concurrency,
        visibility_timeout=visibility_timeout,
        handler_timeout=handler_timeout,
        wait_time_seconds=wait_time_seconds,
        drain_timeout=drain_timeout,
        retry_delay=retry_delay or backoff_visibility(),
        name="transflow-worker",
    )


def run_worker(worker: QueuePoller) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, then stop gracefully. Call from the main
    thread (signal handlers can only be installed there)."""
    worker.install_signal_handlers()
    worker.run()
