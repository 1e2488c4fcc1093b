"""The SAM template, byte for byte, for a few option sets: a refactoring of
:mod:`transflow.ops.sam` must not change what it writes. tests/data/sam-templates.json holds
the text the code wrote before it was split into an options class and one function per
resource; regenerate it (``python -m tests.unit.test_sam_snapshot``) only for a change
meant to alter the template, and read the diff."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from transflow import SqsConfig, TransflowConfig
from transflow.ops.sam import SamOptions, sam_template

SNAPSHOTS = Path(__file__).resolve().parent.parent / "data" / "sam-templates.json"

_PLAIN = TransflowConfig(project="shop", branch="feature-checkout")
_LONG = TransflowConfig(
    project="p" * 60,
    branch="release-2024",
    sqs=SqsConfig(visibility_timeout_sec=60, max_message_bytes=1_048_576, batch_size=3),
)
_FANOUT = attrs.evolve(_PLAIN, sqs=attrs.evolve(_PLAIN.sqs, progress_fanout="sns"))
_NAMED_TOPIC = attrs.evolve(
    _PLAIN,
    sqs=attrs.evolve(
        _PLAIN.sqs, progress_topic_arn="arn:aws:sns:eu-west-1:123456789012:shop-progress.fifo"
    ),
)

CASES: dict[str, tuple[TransflowConfig, dict[str, Any]]] = {
    "defaults": (_PLAIN, {"upload_bucket": "shop-uploads"}),
    "separate-buckets": (
        _LONG,
        {
            "upload_bucket": "in-bucket",
            "output_bucket": "out-bucket",
            "claim_check_prefix": "claims/",
            "maximum_concurrency": 20,
            "function_timeout_sec": 9,
            "memory_mb": 2048,
        },
    ),
    "direct-s3-no-recovery": (
        _PLAIN,
        {
            "upload_bucket": "shop-uploads",
            "bridge_trigger": "s3",
            "recovery_handler": None,
            "alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:ops",
            "queue_age_alarm_sec": 300,
        },
    ),
    "fanout-everything-set": (
        _FANOUT,
        {
            "upload_bucket": "shop-uploads",
            "output_bucket": "shop-uploads",
            "code_uri": "build/",
            "bridge_handler": "handlers.bridge",
            "processor_handler": "handlers.process",
            "runtime": "python3.11",
            "bridge_timeout_sec": 30,
            "bridge_batch_size": 10,
            "bridge_batching_window_sec": 0,
            "recovery_handler": "handlers.recover",
            "recovery_schedule": "cron(0/5 * * * ? *)",
            "stale_upload_age_sec": 600,
            "alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:ops",
            "abort_incomplete_multipart_days": 3,
            "upload_origins": ("https://app.example.com", "http://localhost:5173"),
        },
    ),
    "named-topic": (_NAMED_TOPIC, {"upload_bucket": "shop-uploads", "bridge_trigger": "s3"}),
}


def render(name: str) -> str:
    config, options = CASES[name]
    return sam_template(config, SamOptions(**options))


@pytest.mark.parametrize("name", sorted(CASES))
def test_sam_template_is_what_it_was(name: str) -> None:
    expected = json.loads(SNAPSHOTS.read_text(encoding="utf-8"))[name]
    assert render(name) == expected


if __name__ == "__main__":  # pragma: no cover - regenerates the snapshots
    SNAPSHOTS.write_text(
        json.dumps({name: render(name) for name in sorted(CASES)}, indent=1) + "\n",
        encoding="utf-8",
    )
    sys.stdout.write(f"wrote {SNAPSHOTS}\n")
