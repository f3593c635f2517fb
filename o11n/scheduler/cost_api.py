"""HTTP route for cost: attempts' runtime priced by their workers, grouped."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from o11n.core.cost import GroupBy, report
from o11n.scheduler.app import Caller, Sched
from o11n.scheduler.schemas import CostLineOut, CostReport
from o11n.store.cost import attempt_uses

router = APIRouter(tags=["cost"])


@router.get("/api/v1/cost")
async def cost(
    sched: Sched,
    who: Caller,
    by: Annotated[GroupBy, Query(description="tenant, pipeline, day or worker")] = "tenant",
    since: Annotated[float, Query(ge=0, description="Attempts that ended after (Unix s)")] = 0,
) -> CostReport:
    """What attempts cost: runtime times the worker's hourly `price` attribute, by the
    share of its cores the job asked for. A tenant token sees its own tenant's."""
    scope = who.scope()
    uses = await sched.db.read(attempt_uses, since)
    if scope is not None:
        uses = [u for u in uses if u.tenant == scope]
    lines = report(uses, by)
    return CostReport(
        by=by,
        total=sum(line.cost for line in lines),
        lines=[
            CostLineOut(key=x.key, attempts=x.attempts, hours=x.hours, cost=x.cost) for x in lines
        ],
    )
