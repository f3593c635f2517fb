"""The in-memory index of queued jobs: k=v tag matching, resource fit and fair order.

Jobs that require the same tags, the same resources and the same placement
constraints are interchangeable for matching, so they share a *bucket* (their
requirement signature); inside a
bucket each tenant has a heap ordered by priority, then submit order. A worker's
tag set is resolved once to the buckets it can serve, and that list is kept up
to date as buckets appear, so a consume looks at buckets, never at jobs: its
cost does not grow with the number of queued jobs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from o11n.core.constraints import NO_CONSTRAINTS, AgentView, Constraints, check
from o11n.core.fairness import FairShare

Tags = frozenset[tuple[str, str]]
ResourceKey = tuple[float, int, int]  # cpu, memory bytes, gpu
SWEEP_EMPTY_BUCKETS = 4096


def as_tags(tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> Tags:
    """The frozen form of a tag mapping."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    return frozenset(items)


def fits(need: ResourceKey, free: ResourceKey) -> bool:
    """True when every resource needed is free."""
    return need[0] <= free[0] and need[1] <= free[1] and need[2] <= free[2]


def admits(constraints: Constraints, tags: Tags) -> bool:
    """Do a worker's tags (its attributes among them) satisfy a job's constraints?"""
    if constraints.is_empty:
        return True
    agent = AgentView(dict(tags).get("hostname", ""), dict(tags))
    return check(constraints, agent, "", (), ()) is None


def add(a: ResourceKey, b: ResourceKey) -> ResourceKey:
    """Both together (resources given back, or reserved on top)."""
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def subtract(free: ResourceKey, need: ResourceKey) -> ResourceKey:
    """What stays free after `need` is taken."""
    return (free[0] - need[0], free[1] - need[1], free[2] - need[2])


@dataclass(eq=False, slots=True)
class Bucket:
    """Queued jobs with one requirement signature, a heap of (-priority, id) per tenant."""

    tags: Tags
    resources: ResourceKey
    constraints: Constraints = NO_CONSTRAINTS
    heaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def serves(self, worker_tags: Tags) -> bool:
        """Can a worker with these tags take this bucket's jobs?"""
        return self.tags <= worker_tags and admits(self.constraints, worker_tags)


@dataclass(frozen=True, slots=True)
class Match:
    """A job taken off the index for a worker."""

    job_id: int
    tenant: str
    priority: int
    tags: Tags
    resources: ResourceKey
    constraints: Constraints = NO_CONSTRAINTS


class QueueIndex:
    """Queued jobs, indexed by requirement signature; `consume()` picks the next for a worker."""

    def __init__(self, fairness: FairShare | None = None) -> None:
        self.fairness = fairness or FairShare()
        self._buckets: dict[tuple[Tags, ResourceKey, Constraints], Bucket] = {}
        self._where: dict[int, Bucket] = {}
        self._tenant_buckets: dict[str, dict[Bucket, int]] = {}
        self._tenant_counts: dict[str, int] = {}
        self._served: dict[Tags, set[Bucket]] = {}
        self._emptied: set[Bucket] = set()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._where

    def counts_by_tenant(self) -> dict[str, int]:
        """Queued jobs per tenant (tenants with none are left out)."""
        return {t: n for t, n in self._tenant_counts.items() if n}

    def demand(self) -> list[tuple[Bucket, int]]:
        """Each requirement signature that has queued jobs, with how many (what the
        autoscaler looks at)."""
        counts: dict[Bucket, int] = {}
        for per_tenant in self._tenant_buckets.values():
            for bucket, count in per_tenant.items():
                if count:
                    counts[bucket] = counts.get(bucket, 0) + count
        return list(counts.items())

    def add(
        self,
        job_id: int,
        tenant: str,
        priority: int,
        tags: Tags,
        resources: ResourceKey,
        constraints: Constraints = NO_CONSTRAINTS,
    ) -> None:
        """Queue a job. Ids must grow with submit time: they break priority ties."""
        if job_id in self._where:
            return
        bucket = self._bucket(tags, resources, constraints)
        heapq.heappush(bucket.heaps.setdefault(tenant, []), (-priority, job_id))
        self._where[job_id] = bucket
        per_tenant = self._tenant_buckets.setdefault(tenant, {})
        per_tenant[bucket] = per_tenant.get(bucket, 0) + 1
        count = self._tenant_counts.get(tenant, 0)
        self._tenant_counts[tenant] = count + 1
        if count == 0:
            self.fairness.activate(tenant)

    def remove(self, job_id: int, tenant: str) -> bool:
        """Take a queued job out (a cancel); False if it was not queued."""
        bucket = self._where.pop(job_id, None)
        if bucket is None:
            return False
        self._forget(bucket, tenant)
        return True

    def consume(self, worker_tags: Tags, free: ResourceKey) -> Match | None:
        """Take the next job for a worker with these tags and free resources, or None.

        Order: the tenant furthest below its fair share that has a job this worker
        can take, then that tenant's highest priority, then the oldest.
        """
        served = self._served_by(worker_tags)
        if not served:
            return None
        for tenant in self.fairness.order():
            found = self._best_of_tenant(tenant, served, free)
            if found is not None:
                bucket, job_id = found
                neg_priority, _ = heapq.heappop(bucket.heaps[tenant])
                del self._where[job_id]
                self._forget(bucket, tenant)
                self.fairness.charge(tenant)
                return Match(
                    job_id, tenant, -neg_priority, bucket.tags, bucket.resources, bucket.constraints
                )
        return None

    def _best_of_tenant(
        self, tenant: str, served: set[Bucket], free: ResourceKey
    ) -> tuple[Bucket, int] | None:
        own = self._tenant_buckets.get(tenant)
        if not own:
            return None
        candidates = (
            [b for b in own if b in served]
            if len(own) <= len(served)
            else [b for b in served if b in own]
        )
        best: tuple[int, int] | None = None
        best_bucket: Bucket | None = None
        for bucket in candidates:
            if not fits(bucket.resources, free):
                continue
            top = self._top(bucket, tenant)
            if best is None or top < best:
                best, best_bucket = top, bucket
        if best is None or best_bucket is None:
            return None
        return best_bucket, best[1]

    def _top(self, bucket: Bucket, tenant: str) -> tuple[int, int]:
        heap = bucket.heaps[tenant]
        while self._where.get(heap[0][1]) is not bucket:  # drop entries of removed jobs
            heapq.heappop(heap)
        return heap[0]

    def _forget(self, bucket: Bucket, tenant: str) -> None:
        per_tenant = self._tenant_buckets[tenant]
        left = per_tenant[bucket] - 1
        if left:
            per_tenant[bucket] = left
        else:
            del per_tenant[bucket]
            bucket.heaps.pop(tenant, None)
            if not bucket.heaps:
                self._emptied.add(bucket)
        self._tenant_counts[tenant] -= 1
        if self._tenant_counts[tenant] == 0:
            self.fairness.deactivate(tenant)

    def _bucket(self, tags: Tags, resources: ResourceKey, constraints: Constraints) -> Bucket:
        key = (tags, resources, constraints)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._emptied) > SWEEP_EMPTY_BUCKETS:
                self._sweep()
            bucket = self._buckets[key] = Bucket(tags, resources, constraints)
            for worker_tags, served in self._served.items():
                if bucket.serves(worker_tags):
                    served.add(bucket)
        return bucket

    def _sweep(self) -> None:
        """Drop buckets that have stayed empty, so one-off signatures do not pile up."""
        gone = {b for b in self._emptied if not b.heaps}
        self._emptied.clear()
        for bucket in gone:
            del self._buckets[(bucket.tags, bucket.resources, bucket.constraints)]
        for served in self._served.values():
            served -= gone

    def _served_by(self, worker_tags: Tags) -> set[Bucket]:
        served = self._served.get(worker_tags)
        if served is None:
            served = {b for b in self._buckets.values() if b.serves(worker_tags)}
            self._served[worker_tags] = served
        return served
