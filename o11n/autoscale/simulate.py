"""A discrete-event simulator in virtual time: a trace replayed through the real queue index
(`o11n.core.matching`) and the real autoscaling policy (`o11n.core.autoscale`), on
simulated instances that boot, bill per second, idle out and get reclaimed."""

from __future__ import annotations

import heapq
import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from o11n.autoscale.catalog import Catalog, TraceJob
from o11n.core.autoscale import (
    AutoscaleConfig,
    Autoscaler,
    Demand,
    Running,
    type_tags,
)
from o11n.core.capacity import Instance, InstanceType, Launch, started
from o11n.core.matching import QueueIndex, ResourceKey, Tags, add, as_tags, subtract
from o11n.core.units import parse_size
from o11n.errors import BadRequest

MONTH_S = 365.25 / 12 * 86400  # an average month, 30.44 days
DAY_S = 86400.0
_BASELINE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)c(\d+(?:\.\d+)?[kmgt]?)b?\s*:\s*(\d+(?:\.\d+)?)\s*$", re.I
)


@dataclass(frozen=True, slots=True)
class Baseline:
    """A dedicated machine rented by the month, to compare against."""

    cpu: float
    memory: int
    price_per_month: float
    label: str


def parse_baseline(text: str) -> Baseline:
    """`32c64g:2600`: 32 cores, 64 GiB, 2,600 per month (in the catalog's currency)."""
    match = _BASELINE.match(text)
    if not match:
        raise BadRequest(f"baseline {text!r} must look like 32c64g:2600 (cores, memory, per month)")
    cpu, memory, price = match.groups()
    return Baseline(float(cpu), parse_size(memory), float(price), text.split(":")[0].strip())


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulated cloud: boot time, spot reclaims (per instance-hour past protection)."""

    start_delay_s: float = 30.0
    reclaim_rate: float = 0.0
    seed: int = 0


_ROUNDED = (
    "total_cost",
    "baseline_cost",
    "cost_ratio",
    "instance_hours",
    "span_s",
    "wait_p50_s",
    "wait_p95_s",
    "wait_max_s",
)


@dataclass
class Report:
    """What a simulated run cost and how long its jobs waited in the queue."""

    currency: str
    jobs: int
    unserved: int
    span_s: float
    total_cost: float
    baseline_cost: float | None
    cost_ratio: float | None
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    instances_started: int
    interruptions: int
    instance_hours: float
    served_by: dict[str, float]
    baseline: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values, rounded to 1/10,000."""
        out = asdict(self)
        for key in _ROUNDED:
            if out[key] is not None:
                out[key] = round(out[key], 4)
        out["served_by"] = {k: round(v, 4) for k, v in self.served_by.items()}
        return out


@dataclass
class _Machine:
    """A simulated instance and its worker."""

    instance: Instance
    ready_at: float
    tags: Tags
    free: ResourceKey
    running: dict[int, ResourceKey] = field(default_factory=dict)
    idle_since: float | None = None

    @property
    def ready(self) -> bool:
        return self.idle_since is not None or bool(self.running)


@dataclass
class _Job:
    spec: TraceJob
    resources: ResourceKey
    queued_since: float = 0.0
    waited: float = 0.0
    attempt: int = 0
    done: bool = False


class Simulation:
    """One replay of a trace; `run()` returns the report."""

    def __init__(
        self,
        trace: list[TraceJob],
        catalog: Catalog,
        config: AutoscaleConfig | None,
        sim: SimConfig = SimConfig(),
        static: list[InstanceType] | None = None,
    ) -> None:
        self.catalog, self.config, self.sim = catalog, config, sim
        self.policy = Autoscaler(config) if config else None
        self.rng = random.Random(sim.seed)
        self.index = QueueIndex()
        self.jobs = {i + 1: _Job(job, _resources(job)) for i, job in enumerate(trace)}
        self.machines: dict[str, _Machine] = {}
        self.queued: dict[int, None] = {}  # job ids in the index, in queue order
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.end = 0.0
        self.cost = 0.0
        self.hours = 0.0
        self.interruptions = 0
        self.started = 0
        self.finished = 0
        self.served: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []
        for job_id, job in self.jobs.items():
            self._push(job.spec.submit_s, "submit", job_id)
        if config:  # a price change can release demand held by a price limit or budget
            for points in catalog.history.values():
                for at, _ in points:
                    self._push(at, "wake", None)
        for kind in static or []:
            self._start(Launch((kind,), spot_strategy="none", spot_duration_s=0.0), ready=0.0)

    def run(self) -> Report:
        """Replay every event in time order; the policy decides after each moment."""
        while self.events:
            self.now = self.events[0][0]
            while self.events and self.events[0][0] == self.now:
                _, _, kind, what = heapq.heappop(self.events)
                getattr(self, f"_on_{kind}")(what)
            self._dispatch()
            self._decide()
            if self._finished():
                break
        for machine in list(self.machines.values()):
            self._stop(machine, self.now, "end of the trace")
        return self._report()

    def _finished(self) -> bool:
        """Every job has run and the policy has nothing left to stop."""
        if self.finished < len(self.jobs):
            return False
        return self.config is None or len(self.machines) <= self.config.min_workers

    # events

    def _on_submit(self, job_id: int) -> None:
        self._queue(job_id)

    def _on_ready(self, instance_id: str) -> None:
        machine = self.machines.get(instance_id)
        if machine is not None:
            self._set_idle(machine)

    def _on_finish(self, what: tuple[int, int, str]) -> None:
        job_id, attempt, instance_id = what
        job, machine = self.jobs[job_id], self.machines.get(instance_id)
        if job.attempt != attempt or machine is None:
            return  # the attempt was lost with its instance
        machine.free = add(machine.free, machine.running.pop(job_id))
        job.done = True
        self.finished += 1
        self.served[machine.instance.type.name] += 1
        self.end = max(self.end, self.now)
        if not machine.running:
            self._set_idle(machine)

    def _on_reclaim(self, instance_id: str) -> None:
        machine = self.machines.get(instance_id)
        if machine is None:
            return
        self.interruptions += 1
        machine.instance.reclaimed = True
        for job_id in list(machine.running):
            self.jobs[job_id].attempt += 1  # its finish event is now stale: lost, requeued
            self._queue(job_id)
        self._stop(machine, self.now, "reclaimed (spot interruption)")

    def _on_wake(self, _: None) -> None:
        """Nothing to do: the policy runs after every moment that has events."""

    # the worker side: the real queue index

    def _queue(self, job_id: int) -> None:
        job = self.jobs[job_id]
        job.queued_since = self.now
        tags = as_tags(job.spec.tags)
        self.index.add(job_id, job.spec.tenant, 0, tags, job.resources)
        self.queued[job_id] = None
        if self.config:
            self._push(self.now + self.config.scale_up_after_s, "wake", None)

    def _dispatch(self) -> None:
        if not len(self.index):
            return
        for machine in self.machines.values():
            if machine.ready:
                self._fill(machine)

    def _fill(self, machine: _Machine) -> None:
        while (match := self.index.consume(machine.tags, machine.free)) is not None:
            job = self.jobs[match.job_id]
            del self.queued[match.job_id]
            job.waited += self.now - job.queued_since
            machine.free = subtract(machine.free, match.resources)
            machine.running[match.job_id] = match.resources
            machine.idle_since = None
            what = (match.job_id, job.attempt, machine.instance.id)
            self._push(self.now + job.spec.duration_s, "finish", what)

    def _set_idle(self, machine: _Machine) -> None:
        machine.idle_since = self.now
        if self.config:
            wake = max(self.now + self.config.idle_ttl_s, machine.instance.protected_until)
            self._push(wake, "wake", None)

    # the autoscaler side: the real policy

    def _decide(self) -> None:
        if self.policy is None:
            return
        views = [self._view(m) for m in self.machines.values()]
        decisions = self.policy.decide(
            self._demands(), views, self.catalog.at(self.now), [], self.now
        )
        for stop in decisions.stops:
            self._stop(self.machines[stop.instance.id], self.now, stop.reason)
        if self.finished == len(self.jobs):
            return  # nothing left to run: min_workers are not refilled after the trace
        for launch in decisions.launches:
            self._start(launch, ready=self.now + self.sim.start_delay_s)

    def _demands(self) -> list[Demand]:
        return [self._demand(job_id) for job_id in self.queued]

    def _demand(self, job_id: int) -> Demand:
        job = self.jobs[job_id]
        cpu, memory, gpu = job.resources
        return Demand(cpu, memory, job.queued_since, gpu, job.spec.tags, f"job {job_id}")

    def _view(self, machine: _Machine) -> Running:
        booting = machine.ready_at > self.now
        return Running(machine.instance, machine.idle_since, booting)

    # the simulated cloud

    def _start(self, launch: Launch, ready: float) -> None:
        kind = launch.candidates[0]  # the simulated cloud always has the first in stock
        self.started += 1
        instance = started(
            launch,
            kind,
            id=f"i-{self.started}",
            worker=f"sim-{self.started}",
            zone=kind.zones[0] if kind.zones else "",
            now=self.now,
        )
        spot = instance.spot
        resources = (kind.cpu, kind.memory, kind.gpu)
        machine = _Machine(instance, ready, as_tags(type_tags(kind)), resources)
        self.machines[instance.id] = machine
        self._push(ready, "ready", instance.id)
        if spot and self.sim.reclaim_rate > 0:
            after = self.rng.expovariate(self.sim.reclaim_rate / 3600)
            self._push(instance.protected_until + after, "reclaim", instance.id)
        self.log.append((self.now, "launch", launch.reason))

    def _stop(self, machine: _Machine, at: float, reason: str) -> None:
        instance = machine.instance
        instance.stopped_at = at
        seconds = math.ceil(at - instance.started_at)  # billed per second, from the launch
        self.cost += instance.hourly_price * seconds / 3600
        self.hours += seconds / 3600
        self.end = max(self.end, at)
        del self.machines[instance.id]
        self.log.append((at, "stop", f"{instance.id} {instance.type.name}: {reason}"))

    def _push(self, at: float, kind: str, what: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, what))

    def _report(self) -> Report:
        waits = sorted(job.waited for job in self.jobs.values() if job.done)
        done = max(1, self.finished)
        return Report(
            currency=self.catalog.currency,
            jobs=len(self.jobs),
            unserved=len(self.jobs) - self.finished,
            span_s=self.end,
            total_cost=self.cost,
            baseline_cost=None,
            cost_ratio=None,
            wait_p50_s=percentile(waits, 50),
            wait_p95_s=percentile(waits, 95),
            wait_max_s=waits[-1] if waits else 0.0,
            instances_started=self.started,
            interruptions=self.interruptions,
            instance_hours=self.hours,
            served_by={k: n / done for k, n in sorted(self.served.items())},
        )


def _resources(job: TraceJob) -> ResourceKey:
    return (job.cpu, job.memory, 0)


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of sorted values (0 when there are none)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return values[rank - 1]


def simulate(
    trace: list[TraceJob],
    catalog: Catalog,
    config: AutoscaleConfig,
    sim: SimConfig = SimConfig(),
    baseline: Baseline | None = None,
) -> Report:
    """Replay a trace with the autoscaler; with a baseline, also on one dedicated machine
    (its cost prorated over the whole days the trace covers, at 30.44 days a month)."""
    report = Simulation(trace, catalog, config, sim).run()
    if baseline is None:
        return report
    days = max(1, math.ceil(report.span_s / DAY_S))
    report.baseline_cost = baseline.price_per_month * days * DAY_S / MONTH_S
    report.cost_ratio = report.total_cost / report.baseline_cost if report.baseline_cost else None
    machine = InstanceType(f"baseline {baseline.label}", baseline.cpu, baseline.memory)
    untagged = [replace(job, tags={}) for job in trace]  # the dedicated machine runs them all
    static = Simulation(untagged, catalog, None, sim, static=[machine]).run()
    report.baseline = {
        "machine": baseline.label,
        "price_per_month": baseline.price_per_month,
        "days": days,
        "wait_p50_s": static.wait_p50_s,
        "wait_p95_s": static.wait_p95_s,
        "wait_max_s": static.wait_max_s,
        "unserved": static.unserved,
    }
    return report
