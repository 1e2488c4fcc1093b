"""The gap detector (issue 20 item 1): within one attempt ``seq`` rises by exactly 1, so an
event of an attempt that never arrives while its successors do is a gap (another reader on
the shared queue took it); a late event fills its hole, a new attempt starts clean, and the
hub logs gaps at ERROR once per window and counts them in its stats and EMF metrics."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

import boto3
import pytest

from tests.support.streaming import wait_until
from transflow import ProgressEvent, ProgressHub, ProgressQueue
from transflow.processing.progress import SEQS_PER_MS, first_seq
from transflow.streaming.fanout import FanOut

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.timezone.utc)
START = first_seq(1_764_842_400.0)  # an attempt's first seq: a multiple of SEQS_PER_MS
LATER = 31.0  # past the default gap_wait of 30 s


def event(upload: str, seq: int) -> ProgressEvent:
    return ProgressEvent.create(
        "progress", upload_id=upload, branch="main", timestamp=T0, seq=seq, percent=seq % 101
    )


def feed(fanout: FanOut, upload: str, seqs: list[int]) -> None:
    for seq in seqs:
        fanout.dispatch(event(upload, seq))


def later() -> float:
    return time.monotonic() + LATER


def test_consecutive_seqs_late_fills_and_new_attempts_are_no_gaps() -> None:
    fanout = FanOut()
    feed(fanout, "a", [START + i for i in range(10)])
    # A retried batch entry arrives after its successors: a hole filled, not a gap.
    feed(fanout, "b", [START, START + 2, START + 3, START + 1])
    # A second attempt numbers its events from the millisecond it started.
    retry = first_seq(1_764_842_460.0)
    feed(fanout, "a", [retry, retry + 1])
    # The first event heard of an upload says nothing of those before it.
    feed(fanout, "c", [START + 500, START + 501])
    assert fanout.take_gaps(later()) == (0, None)
    assert fanout.stats().gaps == 0


def test_seqs_another_reader_took_are_gaps_once_the_wait_is_over() -> None:
    fanout = FanOut()
    # Two hubs on one queue: this one got every other batch of upload u.
    feed(fanout, "u", [START, START + 1, START + 4, START + 5, START + 9])
    assert fanout.take_gaps() == (0, None)  # still within the wait: they may come late
    assert fanout.take_gaps(later()) == (5, "upload:main:u")
    assert fanout.take_gaps(later()) == (0, None)  # handed over once
    assert fanout.stats().gaps == 5


def test_a_new_attempt_missing_its_first_events_has_gaps_from_its_start() -> None:
    fanout = FanOut()
    feed(fanout, "u", [START, START + 1])
    retry = first_seq(1_764_842_460.0)
    feed(fanout, "u", [retry + 3, retry + 4])  # retry .. retry + 2 went elsewhere
    assert fanout.take_gaps(later()) == (3, "upload:main:u")


def test_the_holes_watched_are_bounded() -> None:
    fanout = FanOut(max_holes=10)
    feed(fanout, "u", [START, START + SEQS_PER_MS - 1])  # 998 holes at once
    assert fanout.take_gaps() == (998 - 10, "upload:main:u")  # the oldest count at once
    assert fanout.take_gaps(later()) == (10, "upload:main:u")


def test_the_hub_logs_gaps_once_per_window_and_counts_them(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRANSFLOW_METRICS", "emf")
    sqs: Any = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/p-main-progress.fifo"
    hub = ProgressHub(sqs, ProgressQueue(url), gap_wait=0.001, gap_log_every=3600)
    caplog.set_level(logging.ERROR, logger="transflow.streaming.hub")
    for seq in (START, START + 2):
        hub.dispatch(event("u", seq))
    wait_until(lambda: hub.stats().gaps == 1, what="the hole to become a gap")
    for seq in (START + 4, START + 6):
        hub.dispatch(event("u", seq))
    wait_until(lambda: hub.stats().gaps == 3, what="two more gaps")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # once per window, not per event
    assert "1 progress events never arrived" in errors[0]
    assert "another process reads the progress queue" in errors[0]
    assert "sqs.progressFanout to 'sns'" in errors[0]
    capsys.readouterr()
    assert hub.emit_metrics().gaps == 3
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["ProgressGaps"] == 3
