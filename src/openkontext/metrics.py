"""Prometheus metrics, one registry per service (no process-wide globals, so several apps can share a process).

Counters and histograms are observed where things happen (this process's workers). What the whole deployment is
doing is read from the job store when Prometheus scrapes ``/metrics``, so any replica reports it, right across
restarts: queue depth and running jobs, and every worker pool's heartbeat (``openkontext_worker_*{worker=…}``:
running, finished, lease takeovers — per worker, whichever process or Ray actor it lives in).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .jobs.store import WorkerReport

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _StoreCollector:
    def __init__(self, counts: Callable[[], dict[str, int]], workers: Callable[[], list[WorkerReport]] | None):
        self._counts = counts
        self._workers = workers

    def collect(self):
        counts = self._counts()
        queued = GaugeMetricFamily("openkontext_queue_depth", "Jobs waiting for a worker (what to scale on).")
        queued.add_metric([], counts.get("queued", 0))
        running = GaugeMetricFamily("openkontext_active_jobs", "Jobs a worker is running.")
        running.add_metric([], counts.get("running", 0))
        families = [queued, running]
        if self._workers is None:
            return families
        reports = self._workers()
        alive = GaugeMetricFamily("openkontext_workers", "Worker pools heard from within a lease, and their threads.",
                                  labels=["unit"])  # fmt: skip
        alive.add_metric(["pools"], len(reports))
        alive.add_metric(["threads"], sum(report.threads for report in reports))
        per_worker = [
            (GaugeMetricFamily, "openkontext_worker_running", "Jobs this worker pool runs now.", "running"),
            (CounterMetricFamily, "openkontext_worker_jobs_finished", "Jobs this worker pool ended since it started.",
             "finished"),
            (CounterMetricFamily, "openkontext_worker_lease_takeovers",
             "Jobs this worker pool claimed after their previous worker's lease lapsed.", "takeovers"),
        ]  # fmt: skip
        families.append(alive)
        for family_type, name, documentation, field in per_worker:
            family = family_type(name, documentation, labels=["worker", "role"])
            for report in reports:
                family.add_metric([report.id, report.role], getattr(report, field))
            families.append(family)
        return families


class Metrics:
    def __init__(self, job_counts: Callable[[], dict[str, int]],
                 worker_reports: Callable[[], list[WorkerReport]] | None = None):  # fmt: skip
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(job_counts, worker_reports))
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
        self.jobs_finished = Counter(
            "openkontext_jobs_finished", "Jobs this process's workers ended, by final status.", ["status"],
            registry=self.registry,
        )  # fmt: skip
        self.lease_takeovers = Counter(
            "openkontext_lease_takeovers", "Jobs this process's workers claimed after another worker's lease lapsed.",
            registry=self.registry,
        )  # fmt: skip
        self.worker_restarts = Counter(
            "openkontext_worker_restarts", "Background loops restarted after an unexpected exception, by loop.",
            ["loop"], registry=self.registry,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
