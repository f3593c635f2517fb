"""HTTP routes for workers: register, lease work, heartbeat, and report attempts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from o11n.core.states import JobState
from o11n.scheduler.app import Caller, Sched
from o11n.scheduler.attempts import AttemptReport, Grant, Report
from o11n.scheduler.auth import WORKER
from o11n.scheduler.schemas import (
    AttemptPath,
    GrantOut,
    HeartbeatIn,
    HeartbeatOut,
    JobIdPath,
    LeaseIn,
    LeaseOut,
    LogAppend,
    LogAppended,
    Registered,
    ReportOut,
    ReportsIn,
    ReportsOut,
    ResultIn,
    ResultOut,
    StartIn,
    TokenOut,
    WorkerIn,
    WorkerList,
    WorkerName,
    WorkerOut,
)
from o11n.scheduler.service import Scheduler
from o11n.scheduler.workers import WorkerState

router = APIRouter(tags=["workers"])


def resources_out(key: tuple[float, int, int]) -> dict[str, float]:
    return {"cpu": key[0], "memory": key[1], "gpu": key[2]}


def _worker_out(sched: Scheduler, worker: WorkerState) -> WorkerOut:
    return WorkerOut(
        name=worker.name,
        tags=worker.own_tags,
        capacity=resources_out(worker.capacity),
        free=resources_out(sched.free(worker)),
        running=sorted(lease.job_id for lease in sched.leases.of_worker(worker.name)),
        last_seen=worker.last_seen,
        online=sched.is_online(worker),
        draining=worker.draining,
    )


@router.post("/api/v1/workers/tokens", status_code=201)
async def worker_token(sched: Sched, who: Caller) -> TokenOut:
    """Issue a token for workers (admin only)."""
    who.require()
    return TokenOut(token=await sched.new_worker_token())


@router.get("/api/v1/workers")
async def list_workers(sched: Sched, who: Caller) -> WorkerList:
    """Every registered worker with its tags, capacity, free resources and jobs (admin)."""
    who.require()
    return WorkerList(
        workers=[
            _worker_out(sched, w) for w in sorted(sched.workers.values(), key=lambda w: w.name)
        ]
    )


@router.post("/api/v1/workers/register")
async def register(body: WorkerIn, sched: Sched, who: Caller) -> Registered:
    """Register a worker's tags and capacity (again after any restart); a worker token
    binds the name to itself, so no other worker token may register or act as it."""
    who.require(WORKER)
    capacity = (body.cpu, body.memory, body.gpu)
    address = str(body.address)
    await sched.register(body.name, body.tags, capacity, address, body.ports, body.disk, who)
    duration = sched.leases.duration
    return Registered(name=body.name, lease_seconds=duration, heartbeat_seconds=duration / 3)


@router.post("/api/v1/workers/{name}/lease")
async def lease(
    name: WorkerName, body: LeaseIn, request: Request, sched: Sched, who: Caller
) -> LeaseOut:
    """Long-poll for up to `max_jobs` jobs; each comes with a lease to heartbeat."""
    sched.act_as(who, name)
    grants = await sched.lease(name, body.max_jobs, body.wait, request.is_disconnected)
    return LeaseOut(jobs=[_grant_out(g) for g in grants])


def _grant_out(g: Grant) -> GrantOut:
    return GrantOut(
        id=g.id,
        tenant=g.tenant,
        name=g.name,
        attempt=g.attempt,
        lease_id=g.lease_id,
        lease_expires_at=g.lease_expires_at,
        spec=g.spec,
    )


@router.post("/api/v1/workers/{name}/heartbeat")
async def heartbeat(name: WorkerName, body: HeartbeatIn, sched: Sched, who: Caller) -> HeartbeatOut:
    """Renew the leases a worker holds; answers which jobs it must stop."""
    sched.act_as(who, name)
    held = [(a.job_id, a.attempt, a.lease_id) for a in body.attempts]
    stop, drain = await sched.heartbeat(name, held, body.wait, body.draining)
    return HeartbeatOut(stop=stop, drain=drain)


@router.post("/api/v1/workers/{name}/reports")
async def reports(name: WorkerName, body: ReportsIn, sched: Sched, who: Caller) -> ReportsOut:
    """Many attempts' starts and results in one call; each is accepted or refused alone
    (refused, too, when it is not leased to this worker)."""
    sched.act_as(who, name)
    sched.worker(name).last_seen = sched.clock()
    batch = [
        AttemptReport(
            r.job_id,
            r.attempt,
            r.lease_id,
            r.started_at,
            None
            if r.result is None
            else Report(
                r.result.exit_code,
                r.result.signal,
                r.result.kind,
                r.result.reason,
                r.result.started_at,
                r.result.outputs,
            ),
        )
        for r in body.reports
    ]
    answers, grants = await sched.report(batch, name, body.max_jobs)
    return ReportsOut(
        results=[
            ReportOut(job_id=r.job_id, ok=True, state=a)
            if isinstance(a, JobState)
            else ReportOut(job_id=r.job_id, ok=False, message=a)
            for r, a in zip(body.reports, answers, strict=True)
        ],
        jobs=[_grant_out(g) for g in grants],
    )


@router.post("/api/v1/workers/{name}/drain")
async def drain(name: WorkerName, sched: Sched, who: Caller) -> WorkerOut:
    """Give a worker no new work; it finishes its jobs and exits."""
    who.require()
    sched.drain(name)
    return _worker_out(sched, sched.worker(name))


@router.post("/api/v1/jobs/{job_id}/attempts/{attempt}/start", tags=["attempts"])
async def start(
    job_id: JobIdPath, attempt: AttemptPath, body: StartIn, sched: Sched, who: Caller
) -> ResultOut:
    """The attempt's command has started."""
    sched.act_for_attempt(who, job_id, attempt)
    await sched.started(job_id, attempt, body.lease_id, body.started_at)
    return ResultOut(state=JobState.RUNNING)


@router.post("/api/v1/jobs/{job_id}/attempts/{attempt}/result", tags=["attempts"])
async def result(
    job_id: JobIdPath, attempt: AttemptPath, body: ResultIn, sched: Sched, who: Caller
) -> ResultOut:
    """The attempt has ended; answers the job's state (queued again if it will retry)."""
    sched.act_for_attempt(who, job_id, attempt)
    report = Report(
        body.exit_code, body.signal, body.kind, body.reason, body.started_at, body.outputs
    )
    return ResultOut(state=await sched.finished(job_id, attempt, body.lease_id, report))


@router.post("/api/v1/jobs/{job_id}/attempts/{attempt}/logs", tags=["attempts"])
async def append_logs(
    job_id: JobIdPath, attempt: AttemptPath, body: LogAppend, sched: Sched, who: Caller
) -> LogAppended:
    """Append log chunks; a chunk re-sent with the same seq is stored once."""
    sched.act_for_attempt(who, job_id, attempt)
    chunks = [(c.seq, c.stream, c.data.encode()) for c in body.chunks]
    return LogAppended(stored=await sched.append_logs(job_id, attempt, body.lease_id, chunks))
