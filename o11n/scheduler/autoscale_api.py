"""HTTP routes of the autoscaler: its instances and its decisions with their reasons."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from o11n.autoscale.pool import ElasticPool
from o11n.errors import NotFound
from o11n.scheduler.app import Caller

router = APIRouter(tags=["autoscale"])


def pool_of(request: Request) -> ElasticPool:
    """The scheduler's autoscaler; NotFound when it runs without one."""
    pool: ElasticPool | None = getattr(request.app.state, "autoscale", None)
    if pool is None:
        raise NotFound("autoscaling is off: start the scheduler with --autoscale CATALOG")
    return pool


@router.get("/api/v1/autoscale")
async def autoscale_status(request: Request, who: Caller) -> dict[str, Any]:
    """The instances the autoscaler started (live and stopped) and its counters (admin)."""
    who.require()
    return pool_of(request).status()


@router.get("/api/v1/autoscale/events")
async def autoscale_events(request: Request, who: Caller) -> dict[str, Any]:
    """The autoscaler's last 1,000 decisions and happenings, oldest first (admin)."""
    who.require()
    return {"events": [e.as_json() for e in pool_of(request).events]}
