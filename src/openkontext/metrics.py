"""Prometheus metrics, one registry per service (no process-wide globals, so several apps can share a process).

Counters and histograms are observed where things happen (the workers); queue depth and active jobs are read from
the job store when Prometheus scrapes ``/metrics``, so they are right across restarts and replicas.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _StoreCollector:
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self._counts = counts

    def collect(self):
        counts = self._counts()
        queued = GaugeMetricFamily("openkontext_queue_depth", "Jobs waiting for a worker.")
        queued.add_metric([], counts.get("queued", 0))
        running = GaugeMetricFamily("openkontext_active_jobs", "Jobs a worker is running.")
        running.add_metric([], counts.get("running", 0))
        return [queued, running]


class Metrics:
    def __init__(self, job_counts: Callable[[], dict[str, int]]):
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(job_counts))
        self.job_latency = Histogram(
            "openkontext_job_duration_seconds",
            "From submit to the end of the job, by final status.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.step_time = Histogram(
            "openkontext_engine_step_seconds", "Wall time of one sampling step.", buckets=STEP_BUCKETS,
            registry=self.registry,
        )  # fmt: skip

        self.worker_errors = Counter(
            "openkontext_worker_errors",
            "Errors a background loop lived through (store or disk unavailable …), by loop: work, heartbeat, janitor.",
            ["loop"],
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "openkontext_worker_restarts", "Background loops restarted after an unexpected exception, by loop.",
            ["loop"], registry=self.registry,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
