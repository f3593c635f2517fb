"""What compute cost: an attempt's runtime times its share of its worker's hourly price.

The share is the cores the job asked for over the cores the worker offers (a job that
asks for 2 of an 8-core worker's cores pays a quarter of its price while it runs), at
most the whole worker. A worker's price is its agent attribute `price` (per hour; the
autoscaler sets it on the workers it starts, a platform team on static ones); a worker
without one costs nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

GroupBy = Literal["tenant", "pipeline", "day", "worker"]
GROUPS: tuple[GroupBy, ...] = ("tenant", "pipeline", "day", "worker")


@dataclass(frozen=True, slots=True)
class AttemptUse:
    """One attempt that ran: who ran it where, for how long, on how many cores."""

    job_id: int
    tenant: str
    pipeline: str | None
    worker: str
    started_at: float
    ended_at: float
    cpu: float
    worker_cpu: float
    hourly_price: float

    @property
    def hours(self) -> float:
        return max(0.0, self.ended_at - self.started_at) / 3600

    @property
    def cost(self) -> float:
        share = min(1.0, self.cpu / self.worker_cpu) if self.worker_cpu > 0 else 1.0
        return self.hours * self.hourly_price * share


@dataclass(slots=True)
class CostLine:
    """The attempts of one group, their runtime and their cost."""

    key: str
    attempts: int = 0
    hours: float = 0.0
    cost: float = 0.0


def group_key(use: AttemptUse, by: GroupBy) -> str:
    """The group an attempt falls in."""
    if by == "tenant":
        return use.tenant
    if by == "pipeline":
        return use.pipeline or "-"
    if by == "worker":
        return use.worker
    day = datetime.datetime.fromtimestamp(use.started_at, tz=datetime.UTC)
    return day.date().isoformat()


def report(uses: Iterable[AttemptUse], by: GroupBy) -> list[CostLine]:
    """Cost per group, the most expensive first."""
    lines: dict[str, CostLine] = {}
    for use in uses:
        line = lines.setdefault(group_key(use, by), CostLine(group_key(use, by)))
        line.attempts += 1
        line.hours += use.hours
        line.cost += use.cost
    return sorted(lines.values(), key=lambda line: (-line.cost, line.key))
