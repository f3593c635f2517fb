"""Prometheus metrics, fed by the event stream and read from the index at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from o11n.core.cost import AttemptUse
from o11n.core.jobs import Event
from o11n.core.states import JobState

DISPATCH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600)


class _QueueLength(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "o11n_queue_length", "Jobs waiting for a worker, by tenant.", labels=["tenant"]
        )
        for tenant, count in sorted(self._counts().items()):
            family.add_metric([tenant], count)
        yield family


class Metrics:
    """The scheduler's metrics in a registry of their own."""

    def __init__(self, queue_counts: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_QueueLength(queue_counts))
        self.jobs = Gauge("o11n_jobs", "Jobs by state.", ["state"], registry=self.registry)
        self.dispatch_latency = Histogram(
            "o11n_dispatch_latency_seconds",
            "Time from a job being queued to its assignment to a worker.",
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self.leases_expired = Counter(
            "o11n_leases_expired_total",
            "Attempts whose lease ran out (the worker vanished or stalled).",
            registry=self.registry,
        )
        self.cost = Counter(
            "o11n_cost",
            "What ended attempts cost (runtime times the worker's price share), by tenant.",
            ["tenant"],
            registry=self.registry,
        )
        self.cost_counted_until = 0.0  # attempts that ended by then are in `cost`
        for state in JobState:
            self.jobs.labels(state.value)

    def add_costs(self, uses: Iterable[AttemptUse]) -> None:
        """Count the cost of attempts that ended after the ones counted so far."""
        counted = self.cost_counted_until
        for use in uses:
            if use.ended_at > counted:
                self.cost.labels(use.tenant).inc(use.cost)
                self.cost_counted_until = max(self.cost_counted_until, use.ended_at)

    def load_counts(self, counts: dict[str, int]) -> None:
        """Start the per-state gauge from the store's counts."""
        for state, count in counts.items():
            self.jobs.labels(state).set(count)

    def on_event(self, event: Event) -> None:
        """Follow one state change."""
        if event.previous is not None:
            self.jobs.labels(str(event.previous)).dec()
        self.jobs.labels(str(event.state)).inc()
        if (
            event.previous in (JobState.ASSIGNED, JobState.RUNNING)
            and event.reason
            and (event.reason.startswith(LEASE_EXPIRED))
        ):
            self.leases_expired.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


LEASE_EXPIRED = "lease expired"
