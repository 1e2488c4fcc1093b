"""Metrics in CloudWatch Embedded Metric Format: one JSON line on stdout per record.

In Lambda, stdout goes to CloudWatch Logs, which turns each such line into metrics: no
client, no PutMetricData call, no dependency. Lines are written when the process runs in
Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is set) or ``TRANSFLOW_METRICS=emf``;
``TRANSFLOW_METRICS=off`` silences them (a worker whose stdout is not collected, a CLI).
The variables are read at each call, never at import.

Format: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["NAMESPACE", "Metric", "emf_record", "emit", "enabled"]

NAMESPACE = "Transflow"
"""The CloudWatch namespace of transflow's metrics."""

Metric = tuple[float, str]
"""A value and its CloudWatch unit (``Count``, ``Milliseconds``, …)."""

_write_lock = threading.Lock()


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether metric lines are written in this process now."""
    env = os.environ if env is None else env
    choice = env.get("TRANSFLOW_METRICS", "").strip().lower()
    if choice in ("off", "0", "false", "none"):
        return False
    return choice == "emf" or bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))


def emf_record(
    metrics: Mapping[str, Metric],
    dimensions: Mapping[str, str],
    *,
    properties: Mapping[str, Any] | None = None,
    namespace: str = NAMESPACE,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One EMF record: the metric values and dimension values at the top level, described
    by ``_aws.CloudWatchMetrics``; ``properties`` go along unindexed (searchable in Logs
    Insights, no metric cost)."""
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        },
        **(properties or {}),
        **dimensions,
    }
    record.update({name: value for name, (value, _) in metrics.items()})
    return record


def emit(
    metrics: Mapping[str, Metric],
    dimensions: Mapping[str, str],
    *,
    properties: Mapping[str, Any] | None = None,
    namespace: str = NAMESPACE,
    stream: TextIO | None = None,
) -> None:
    """Write one EMF line when metrics are :func:`enabled`. Never raises: a metric must not
    fail the work it measures."""
    if not enabled():
        return
    try:
        line = json.dumps(
            emf_record(metrics, dimensions, properties=properties, namespace=namespace),
            separators=(",", ":"),
            default=str,
        )
        out = stream or sys.stdout
        with _write_lock:  # whole lines, also from worker threads
            out.write(line + "\n")
            out.flush()
    except Exception:  # noqa: S110 - see the docstring
        pass
