"""HTTP routes for the pool's agents: attributes, disable/enable, and the offers table."""

from __future__ import annotations

from fastapi import APIRouter

from o11n.core.ports import format_ranges
from o11n.scheduler.app import Caller, Sched
from o11n.scheduler.schemas import AgentList, AgentOut, AgentState, AttributeIn, WorkerName
from o11n.scheduler.service import Scheduler
from o11n.scheduler.worker_api import resources_out
from o11n.scheduler.workers import WorkerState

router = APIRouter(tags=["agents"])


def agent_out(sched: Scheduler, worker: WorkerState) -> AgentOut:
    """An agent as the API shows it: attributes, free resources and free host ports."""
    return AgentOut(
        name=worker.name,
        ip=worker.address,
        online=sched.is_online(worker),
        disabled=worker.disabled,
        draining=worker.draining,
        tags=worker.own_tags,
        attributes=worker.attributes,
        capacity=resources_out(worker.capacity),
        free=resources_out(sched.free(worker)),
        disk=worker.disk,
        ports=format_ranges(worker.ports.free_ranges()),
    )


@router.get("/api/v1/agents")
async def list_agents(sched: Sched, who: Caller) -> AgentList:
    """Every registered agent with its attributes, disabled flag and tags (admin)."""
    who.require()
    workers = sorted(sched.workers.values(), key=lambda w: w.name)
    return AgentList(agents=[agent_out(sched, w) for w in workers])


@router.get("/api/v1/offers")
async def offers(sched: Sched, who: Caller) -> AgentList:
    """What each online, enabled agent has free: resources, disk and host ports (admin)."""
    who.require()
    workers = sorted(sched.workers.values(), key=lambda w: w.name)
    return AgentList(
        agents=[
            agent_out(sched, w)
            for w in workers
            if sched.is_online(w) and not w.disabled and not w.draining
        ]
    )


@router.post("/api/v1/agents/attributes")
async def set_attribute(body: AttributeIn, sched: Sched, who: Caller) -> AgentList:
    """Set a string or scalar attribute on agents, or delete it (admin only)."""
    who.require()
    value = None if body.delete else (body.string if body.string is not None else body.scalar)
    await sched.set_attribute(body.agents, body.key, value)
    online = [sched.workers[n] for n in body.agents if n in sched.workers]
    return AgentList(agents=[agent_out(sched, w) for w in online])


@router.post("/api/v1/agents/{name}/disable")
async def disable(name: WorkerName, sched: Sched, who: Caller) -> AgentState:
    """Give an agent no new jobs or service tasks; what it runs goes on (admin only)."""
    who.require()
    await sched.set_disabled(name, True)
    return AgentState(name=name, disabled=True)


@router.post("/api/v1/agents/{name}/enable")
async def enable(name: WorkerName, sched: Sched, who: Caller) -> AgentState:
    """Let a disabled agent take work again (admin only)."""
    who.require()
    await sched.set_disabled(name, False)
    return AgentState(name=name, disabled=False)
