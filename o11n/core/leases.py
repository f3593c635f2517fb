"""Leases: the right of one attempt on one worker to run a job, kept alive by heartbeats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from o11n.core.jobs import JobSpec
from o11n.core.matching import ResourceKey
from o11n.errors import LeaseExpired

Clock = Callable[[], float]


@dataclass(slots=True)
class Lease:
    """One attempt's hold on a job. `lease_id` fences reports from older attempts."""

    job_id: int
    attempt: int
    lease_id: str
    worker: str
    tenant: str
    spec: JobSpec
    expires_at: float = 0.0
    running: bool = False
    cancelled: bool = False


class LeaseBook:
    """Every live lease, by job; expiry is judged against an injected clock."""

    def __init__(self, clock: Clock, duration: float) -> None:
        self.clock = clock
        self.duration = duration
        self._by_job: dict[int, Lease] = {}
        self._by_worker: dict[str, dict[int, Lease]] = {}

    def __len__(self) -> int:
        return len(self._by_job)

    def grant(self, lease: Lease) -> Lease:
        """Record a lease; it expires `duration` seconds from now unless renewed."""
        lease.expires_at = self.clock() + self.duration
        self._by_job[lease.job_id] = lease
        self._by_worker.setdefault(lease.worker, {})[lease.job_id] = lease
        return lease

    def get(self, job_id: int) -> Lease | None:
        """The live lease on a job, if any."""
        return self._by_job.get(job_id)

    def check(self, job_id: int, attempt: int, lease_id: str) -> Lease:
        """The lease a report claims to hold, or LeaseExpired if it is not the live one."""
        lease = self._by_job.get(job_id)
        if lease is None or lease.attempt != attempt or lease.lease_id != lease_id:
            raise LeaseExpired(
                f"job {job_id} attempt {attempt} no longer holds a lease; its report is refused"
            )
        return lease

    def renew(self, lease: Lease) -> None:
        """Extend a lease by the full duration from now."""
        lease.expires_at = self.clock() + self.duration

    def release(self, job_id: int) -> Lease | None:
        """End the lease on a job (the attempt ended or was requeued)."""
        lease = self._by_job.pop(job_id, None)
        if lease is not None:
            self._by_worker[lease.worker].pop(job_id, None)
        return lease

    def expired(self) -> list[Lease]:
        """Leases whose time has run out."""
        now = self.clock()
        return [lease for lease in self._by_job.values() if lease.expires_at < now]

    def of_worker(self, worker: str) -> list[Lease]:
        """The leases a worker holds."""
        return list(self._by_worker.get(worker, {}).values())

    def used_by(self, worker: str) -> ResourceKey:
        """The resources a worker's leased jobs take."""
        needs = [lease.spec.resources for lease in self.of_worker(worker)]
        return (sum(r.cpu for r in needs), sum(r.memory for r in needs), sum(r.gpu for r in needs))
