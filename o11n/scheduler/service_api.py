"""HTTP routes for long-running services: apply, list, inspect, scale, delete, discover."""

from __future__ import annotations

from fastapi import APIRouter, Request

from o11n.core.reserved import refuse_reserved
from o11n.core.services import ServiceSpec
from o11n.pipeline.loader import load_model
from o11n.scheduler.app import Caller
from o11n.scheduler.schemas import (
    Applied,
    EndpointList,
    EndpointOut,
    SampleOut,
    ScaleIn,
    ServiceIn,
    ServiceList,
    ServiceMetrics,
    ServiceNamePath,
    ServiceOut,
    TaskMetricsOut,
    TaskOut,
)
from o11n.scheduler.services import ServiceManager, ServiceState

router = APIRouter(tags=["services"])
BASE = "/api/v1/services/{namespace}/{name}"


def manager_of(request: Request) -> ServiceManager:
    manager: ServiceManager = request.app.state.services
    return manager


def service_out(manager: ServiceManager, svc: ServiceState) -> ServiceOut:
    """A service with its tasks, as the API shows it."""
    tasks = [TaskOut.model_validate(t.view()) for _, t in sorted(svc.tasks.items())]
    return ServiceOut(
        namespace=svc.spec.namespace,
        name=svc.spec.name,
        tenant=svc.tenant,
        instances=0 if svc.deleted else svc.spec.instances,
        running=sum(t.state == "running" for t in tasks),
        version=svc.version,
        deleting=svc.deleted,
        reason=manager.pending_reason(svc),
        spec=svc.spec.model_dump(mode="json", exclude_none=True),
        tasks=tasks,
        created_at=svc.created_at,
        updated_at=svc.updated_at,
    )


@router.post("/api/v1/services")
async def apply(body: ServiceIn, request: Request, who: Caller) -> Applied:
    """Create a service, or change one (its tasks roll over to the new spec one by one)."""
    spec = load_model(body.service, body.file_name, ServiceSpec, "service")
    refuse_reserved(f"service {spec.key}", spec.env, spec.labels)
    manager = manager_of(request)
    result = await manager.apply(who, spec)
    return Applied.model_validate(
        {"result": result, "service": service_out(manager, manager.get(who, spec.key))}
    )


@router.get("/api/v1/services")
async def list_services(request: Request, who: Caller) -> ServiceList:
    """Every service the caller may see."""
    manager = manager_of(request)
    return ServiceList(services=[service_out(manager, s) for s in manager.visible(who)])


@router.get(BASE)
async def inspect(
    namespace: ServiceNamePath, name: ServiceNamePath, request: Request, who: Caller
) -> ServiceOut:
    """A service with each task's agent, address, ports, state, restarts and last exit."""
    manager = manager_of(request)
    return service_out(manager, manager.get(who, f"{namespace}/{name}"))


@router.post(BASE + "/scale")
async def scale(
    namespace: ServiceNamePath, name: ServiceNamePath, body: ScaleIn, request: Request, who: Caller
) -> ServiceOut:
    """Run this many tasks of a service."""
    manager = manager_of(request)
    svc = await manager.scale(who, f"{namespace}/{name}", body.instances)
    return service_out(manager, svc)


@router.delete(BASE)
async def delete(
    namespace: ServiceNamePath, name: ServiceNamePath, request: Request, who: Caller
) -> ServiceOut:
    """Stop every task of a service (freeing their ports) and forget it."""
    manager = manager_of(request)
    key = f"{namespace}/{name}"
    await manager.delete(who, key)
    return service_out(manager, manager.get(who, key))


@router.get(BASE + "/endpoints")
async def endpoints(
    namespace: ServiceNamePath, name: ServiceNamePath, request: Request, who: Caller
) -> EndpointList:
    """Where the running tasks listen: agent, address and named ports."""
    manager = manager_of(request)
    svc = manager.get(who, f"{namespace}/{name}")
    return EndpointList(endpoints=[EndpointOut.model_validate(e) for e in manager.endpoints(svc)])


@router.get(BASE + "/metrics")
async def metrics(
    namespace: ServiceNamePath, name: ServiceNamePath, request: Request, who: Caller
) -> ServiceMetrics:
    """The latest scrape of each running task: up, when, and the samples."""
    manager = manager_of(request)
    svc = manager.get(who, f"{namespace}/{name}")
    found = sorted(
        (f for (key, _), f in manager.scraper.latest.items() if key == svc.key),
        key=lambda f: f.target.task,
    )
    return ServiceMetrics(
        tasks=[
            TaskMetricsOut(
                task=f.target.task,
                agent=f.target.agent,
                up=f.up,
                at=f.at,
                error=f.error,
                samples=[SampleOut(name=s.name, labels=s.labels, value=s.value) for s in f.samples],
                strings=f.strings,
            )
            for f in found
        ]
    )
