"""The store's figures in the Prometheus text format, for a ``/metrics`` endpoint.

Every figure is read from the store when it is scraped, so any process that can open the store
reports the same numbers, however many schedulers share it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from conveyor.store.stats import Histogram, StoreStats

#: Upper bounds in seconds, for batch tasks: from a tenth of a second to an hour.
DEFAULT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class _Source(Protocol):
    def stats(self, buckets: Sequence[float]) -> StoreStats: ...


def render(store: _Source, *, buckets: Sequence[float] = DEFAULT_BUCKETS) -> tuple[bytes, str]:
    """The store's figures as a Prometheus text exposition, and its content type."""
    registry = CollectorRegistry()
    registry.register(_Figures(store.stats(buckets)))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Figures:
    """A collector of one reading of the store."""

    def __init__(self, stats: StoreStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        runs = GaugeMetricFamily("conveyor_runs", "Runs in the store, by state.", labels=["state"])
        for state, n in sorted(s.runs_by_state.items()):
            runs.add_metric([state], n)
        yield runs
        instances = GaugeMetricFamily(
            "conveyor_task_instances",
            "Task instances of pending and running runs, by state.",
            labels=["state"],
        )
        for state, n in sorted(s.instances_by_state.items()):
            instances.add_metric([state], n)
        yield instances
        yield GaugeMetricFamily(
            "conveyor_queue_depth",
            "Task instances of pending and running runs that are ready and wait for a worker.",
            value=s.queue_depth,
        )
        yield GaugeMetricFamily(
            "conveyor_running_attempts", "Attempts running now.", value=s.running_attempts
        )
        duration = HistogramMetricFamily(
            "conveyor_task_duration_seconds",
            "How long ended attempts ran, by how they ended.",
            labels=["state"],
        )
        for state, h in sorted(s.task_duration.items()):
            duration.add_metric([state], _buckets(h), h.total)
        yield duration
        wait = HistogramMetricFamily(
            "conveyor_queue_wait_seconds",
            "How long each attempt waited from its task instance becoming ready to its start.",
        )
        wait.add_metric([], _buckets(s.queue_wait), s.queue_wait.total)
        yield wait


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    """The buckets as Prometheus names their bounds: ``le="0.5"``, ..., ``le="+Inf"``."""
    return [("+Inf" if bound == math.inf else repr(float(bound)), float(n)) for bound, n in h.buckets]
