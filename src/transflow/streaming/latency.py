"""A bounded window of recent durations and its quantiles: what the hub reports as the
dispatch->written time of its streams and the lag of its event loops."""

from __future__ import annotations

import threading
from collections import deque

import attrs

__all__ = ["Quantiles", "Window"]

WINDOW = 4096
"""Durations kept: the most recent ones, so a quantile says how it is going now."""


@attrs.frozen
class Quantiles:
    """Milliseconds: the median, the 99th percentile and the largest of ``count`` recent
    samples (all 0.0 when there were none)."""

    count: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


@attrs.define(eq=False)
class Window:
    """The last ``size`` durations (seconds), added from any thread."""

    size: int = WINDOW
    _samples: deque[float] = attrs.field(init=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    @_samples.default
    def _ring(self) -> deque[float]:
        return deque(maxlen=self.size)

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def add_since(self, now: float, starts: tuple[float, ...]) -> None:
        """Add ``now - start`` for each non-zero start: a stream's write of several events
        takes the lock once."""
        with self._lock:
            self._samples.extend([now - start for start in starts if start])

    def quantiles(self) -> Quantiles:
        """Sorted on demand: O(size log size) per call, nothing per sample."""
        with self._lock:
            ordered = sorted(self._samples)
        if not ordered:
            return Quantiles()
        last = len(ordered) - 1

        def at(q: float) -> float:
            return round(ordered[min(last, int(q * len(ordered)))] * 1000, 3)

        return Quantiles(len(ordered), at(0.5), at(0.99), round(ordered[-1] * 1000, 3))
