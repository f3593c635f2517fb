"""HTTP routes the dashboard needs beyond the public API: live counters and activity charts.

Both are reads: the counters come from the scheduler's memory (queue index, leases,
workers), the charts from the event log. A tenant token sees only its own tenant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query

from o11n.scheduler.app import Caller, Sched
from o11n.scheduler.auth import Principal
from o11n.scheduler.service import Scheduler
from o11n.store.activity import read_activity

router = APIRouter(tags=["dashboard"])

MAX_BUCKETS = 180
ENDED = ("succeeded", "failed", "error", "cancelled")


def _scope(who: Principal) -> str | None:
    """The one tenant the caller may see, or None for all (Forbidden for a worker token)."""
    return who.scope()


@router.get("/api/v1/ui/summary")
async def summary(sched: Sched, who: Caller) -> dict[str, Any]:
    """Live counters: queued and leased jobs per tenant with fair shares, workers online."""
    scope = _scope(who)
    queued = sched.index.counts_by_tenant()
    leased = _leased_by_tenant(sched)
    total_weight = sum(t.weight for t in sched.tenants.values() if queued.get(t.name)) or 1.0
    tenants = [
        {
            "name": t.name,
            "weight": t.weight,
            "queued": queued.get(t.name, 0),
            "assigned": leased.get(t.name, (0, 0))[0],
            "running": leased.get(t.name, (0, 0))[1],
            "share": t.weight / total_weight if queued.get(t.name) else 0.0,
        }
        for t in sorted(sched.tenants.values(), key=lambda t: t.name)
        if scope is None or t.name == scope
    ]
    return {
        "role": who.role,
        "tenant": scope,
        "queued": sum(t["queued"] for t in tenants),
        "assigned": sum(t["assigned"] for t in tenants),
        "running": sum(t["running"] for t in tenants),
        "tenants": tenants,
        "workers": _worker_counts(sched),
    }


def _leased_by_tenant(sched: Scheduler) -> dict[str, tuple[int, int]]:
    """(assigned, running) leases per tenant."""
    counts: dict[str, tuple[int, int]] = {}
    for name in sched.workers:
        for lease in sched.leases.of_worker(name):
            assigned, running = counts.get(lease.tenant, (0, 0))
            counts[lease.tenant] = (
                (assigned, running + 1) if lease.running else (assigned + 1, running)
            )
    return counts


def _worker_counts(sched: Scheduler) -> dict[str, int]:
    workers = list(sched.workers.values())
    online = [w for w in workers if sched.is_online(w)]
    return {
        "total": len(workers),
        "online": len(online),
        "busy": sum(bool(sched.leases.of_worker(w.name)) for w in online),
        "draining": sum(w.draining for w in online),
        "disabled": sum(w.disabled for w in workers),
    }


@dataclass
class Bucket:
    """One slice of the chart's time axis."""

    at: float
    submitted: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    waits: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        waits = self.waits
        return {
            "at": self.at,
            "submitted": self.submitted,
            "started": self.started,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "wait_avg": sum(waits) / len(waits) if waits else None,
            "wait_max": max(waits) if waits else None,
        }


def bucket_seconds(hours: float) -> int:
    """A whole number of minutes per bucket, so the chart has at most MAX_BUCKETS bars."""
    return 60 * max(1, math.ceil(hours * 60 / MAX_BUCKETS))


def chart(
    rows: list[tuple[int, float, str, str | None]],
    queued_before: dict[int, float],
    since: float,
    now: float,
    step: int,
) -> list[dict[str, Any]]:
    """Jobs submitted, started and ended, and queue waits, per `step` seconds.

    `rows` are (job id, at, state, previous) in event order; `queued_before` holds when
    each job last became queued before `since`, for waits that began before the window.
    """
    count = max(1, math.ceil((now - since) / step))
    buckets = [Bucket(at=since + i * step) for i in range(count)]
    queued_at = dict(queued_before)
    for job_id, at, state, previous in rows:
        bucket = buckets[min(count - 1, max(0, int((at - since) // step)))]
        if state == "queued":
            queued_at[job_id] = at
            bucket.submitted += previous is None
        elif state == "assigned":
            bucket.started += 1
            if job_id in queued_at:
                bucket.waits.append(max(0.0, at - queued_at.pop(job_id)))
        elif state == "succeeded":
            bucket.succeeded += 1
        elif state in ENDED:
            bucket.failed += state != "cancelled"
    return [b.as_json() for b in buckets]


@router.get("/api/v1/ui/activity")
async def activity(
    sched: Sched,
    who: Caller,
    hours: Annotated[float, Query(gt=0, le=168, description="How far back")] = 3.0,
) -> dict[str, Any]:
    """Per time bucket: jobs submitted, started, succeeded, failed, and queue waits
    (seconds from queued to assigned) of the caller's tenant (admin: all), from the
    event log."""
    now = sched.clock()
    step = bucket_seconds(hours)
    since = math.floor((now - hours * 3600) / step) * step
    rows, before = await sched.db.read(read_activity, _scope(who), since)
    return {
        "since": since,
        "until": now,
        "bucket_seconds": step,
        "buckets": chart(rows, before, since, now, step),
    }
