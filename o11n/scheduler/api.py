"""HTTP routes for people and tools: jobs, tenants, health and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from o11n.core.jobs import Job, JobSpec
from o11n.core.reserved import check_job
from o11n.core.states import JobState
from o11n.errors import BadRequest
from o11n.scheduler.app import Caller, Sched
from o11n.scheduler.schemas import (
    MAX_ATTEMPT,
    CancelResult,
    EventIdQuery,
    EventPage,
    Health,
    JobIdPath,
    JobPage,
    LogChunkOut,
    LogPage,
    SubmitBatch,
    Submitted,
    SubmittedBatch,
    TenantIn,
    TenantList,
    TenantOut,
)
from o11n.store.cost import attempt_uses
from o11n.store.jobs import JobFilter

router = APIRouter()
PairList = Annotated[list[str], Query(max_length=32)]


def _pairs(values: list[str], what: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise BadRequest(f"{what} filter {value!r} must look like KEY=VALUE")
        pairs.append((key, val))
    return tuple(pairs)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise BadRequest(f"invalid cursor {cursor!r}")
    return int(cursor)


@router.get("/healthz", tags=["service"])
async def healthz(sched: Sched) -> Health:
    """Liveness: the scheduler answers and how much it holds."""
    return Health(status="ok", queued=len(sched.index), leased=len(sched.leases))


@router.get("/metrics", tags=["service"], response_class=Response)
async def metrics(sched: Sched) -> Response:
    """Prometheus metrics."""
    sched.metrics.add_costs(await sched.db.read(attempt_uses, sched.metrics.cost_counted_until))
    return Response(sched.metrics.render(), media_type="text/plain; version=0.0.4")


@router.post("/api/v1/jobs", tags=["jobs"], status_code=201)
async def submit(spec: JobSpec, sched: Sched, who: Caller) -> Submitted:
    """Submit one job; answered once it is durably stored."""
    check_job(spec)
    (done,) = await sched.submit(who, [spec])
    return Submitted(id=done.id, created=done.created)


@router.post("/api/v1/jobs/batch", tags=["jobs"], status_code=201)
async def submit_batch(batch: SubmitBatch, sched: Sched, who: Caller) -> SubmittedBatch:
    """Submit up to 1,000 jobs in one commit."""
    for number, spec in enumerate(batch.jobs):
        check_job(spec, f"jobs[{number}]")
    done = await sched.submit(who, batch.jobs)
    return SubmittedBatch(jobs=[Submitted(id=d.id, created=d.created) for d in done])


@router.get("/api/v1/jobs", tags=["jobs"])
async def list_jobs(
    sched: Sched,
    who: Caller,
    state: Annotated[list[JobState], Query(max_length=7)] = [],  # noqa: B006
    tenant: str | None = None,
    tag: PairList = [],  # noqa: B006
    label: PairList = [],  # noqa: B006
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    """Jobs, newest first, filtered by state, tenant, tag and label (KEY=VALUE)."""
    where = JobFilter(
        tenant=tenant,
        states=tuple(state),
        tags=_pairs(tag, "tag"),
        labels=_pairs(label, "label"),
        before_id=_cursor(cursor),
        limit=limit,
    )
    jobs = await sched.list_jobs(who, where)
    next_cursor = str(jobs[-1].id) if len(jobs) == limit else None
    return JobPage(jobs=jobs, next_cursor=next_cursor)


@router.get("/api/v1/jobs/{job_id}", tags=["jobs"])
async def get_job(job_id: JobIdPath, sched: Sched, who: Caller) -> Job:
    """One job with its attempts."""
    return await sched.get_job(who, job_id)


@router.post("/api/v1/jobs/{job_id}/cancel", tags=["jobs"])
async def cancel(job_id: JobIdPath, sched: Sched, who: Caller) -> CancelResult:
    """Cancel a queued or running job (a running one is stopped by its worker)."""
    state = await sched.cancel(who, job_id)
    return CancelResult(id=job_id, state=state)


@router.get("/api/v1/jobs/{job_id}/events", tags=["jobs"])
async def events(
    job_id: JobIdPath, sched: Sched, who: Caller, after: EventIdQuery = 0
) -> EventPage:
    """A job's events in order, after event id `after`."""
    return EventPage(events=await sched.events(who, job_id, after))


@router.get("/api/v1/jobs/{job_id}/logs", tags=["jobs"])
async def logs(
    job_id: JobIdPath,
    sched: Sched,
    who: Caller,
    after_attempt: Annotated[int, Query(ge=0, le=MAX_ATTEMPT)] = 0,
    after_seq: Annotated[int, Query(ge=-1, le=2**31 - 1)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> LogPage:
    """A job's log chunks in order, after the position (after_attempt, after_seq)."""
    chunks = await sched.read_logs(who, job_id, (after_attempt, after_seq), limit)
    last = (chunks[-1].attempt, chunks[-1].seq) if chunks else (after_attempt, after_seq)
    return LogPage(
        chunks=[
            LogChunkOut(
                attempt=c.attempt,
                seq=c.seq,
                stream=c.stream,
                at=c.at,
                data=c.data.decode("utf-8", errors="replace"),
            )
            for c in chunks
        ],
        next_attempt=last[0],
        next_seq=last[1],
    )


@router.post("/api/v1/tenants", tags=["tenants"], status_code=201)
async def create_tenant(body: TenantIn, sched: Sched, who: Caller) -> TenantOut:
    """Create a tenant (or change its weight) and issue a token for it."""
    who.require()
    token = await sched.create_tenant(body.name, body.weight)
    row = sched.tenants[body.name]
    return TenantOut(name=row.name, weight=row.weight, created_at=row.created_at, token=token)


@router.get("/api/v1/tenants", tags=["tenants"])
async def list_tenants(sched: Sched, who: Caller) -> TenantList:
    """Tenants with their weights and queued jobs (a tenant token: its own)."""
    who.scope()  # a worker token lists none
    queued = sched.index.counts_by_tenant()
    return TenantList(
        tenants=[
            TenantOut(
                name=t.name, weight=t.weight, created_at=t.created_at, queued=queued.get(t.name, 0)
            )
            for t in sorted(sched.tenants.values(), key=lambda t: t.name)
            if who.may_see(t.name)
        ]
    )
