"""Services: the scheduler keeps each service's tasks placed, running and restarted.

A task runs as an ordinary job pinned to one agent (its `hostname` tag), with
its host ports and its agent's address in the job's `service` field, which only
the scheduler sets (the worker gives the job `PORT_<NAME>` and `O11N_HOST_IP`
from it); the job's lease, log, cancel and worker machinery is the task's. The
jobs are the truth: at start-up the live ones, found by their `o11n.service`
label, are the tasks. A reconcile loop (every second, and at once when a task's
job changes) places missing tasks on agents that have room, ports and satisfy
the constraints; restarts tasks that exited, with back-off; places the tasks of
a lost or disabled agent elsewhere; stops surplus tasks; and rolls tasks over to
a changed spec one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from o11n.core.constraints import AgentView, Constraints, LiveTask, Placement, why_unplaceable
from o11n.core.jobs import MAX_TIMEOUT_S, Event, JobSpec, RetryPolicy, ServiceTask
from o11n.core.matching import ResourceKey, fits, subtract
from o11n.core.services import ServiceSpec, task_ports
from o11n.core.states import JobState
from o11n.errors import Conflict, NotFound, O11nError
from o11n.scheduler.auth import Principal
from o11n.scheduler.scrape import ScrapeCollector, Scraper, Target
from o11n.scheduler.service import Scheduler
from o11n.scheduler.workers import WorkerState
from o11n.store.jobs import JobFilter
from o11n.store.services import ServiceStore

log = logging.getLogger(__name__)
ADMIN = Principal("admin")
SERVICE, TASK, VERSION = "o11n.service", "o11n.task", "o11n.version"
RECONCILE_SECONDS = 1.0
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
STABLE_SECONDS = 60.0  # a task that ran this long starts its back-off afresh
LIVE_STATES = (JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING)


@dataclass
class Task:
    """One instance of a service."""

    index: int
    version: str
    state: str = "pending"  # pending | starting | running | backoff | stopping
    agent: str | None = None
    ip: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    job_id: int | None = None
    restarts: int = 0
    failures: int = 0  # in a row, for the back-off
    last_exit: str | None = None
    reason: str | None = None
    not_before: float = 0.0
    started_at: float | None = None

    def view(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": self.state,
            "agent": self.agent,
            "ip": self.ip,
            "ports": self.ports,
            "job_id": self.job_id,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "reason": self.reason,
            "version": self.version,
        }


@dataclass
class ServiceState:
    """A service as the manager keeps it."""

    tenant: str
    spec: ServiceSpec
    created_at: float
    updated_at: float
    tasks: dict[int, Task] = field(default_factory=dict)
    deleted: bool = False
    constraints: Constraints = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.update(self.spec)

    def update(self, spec: ServiceSpec) -> None:
        self.spec, self.constraints, self.version = spec, spec.placement(), spec.version()

    @property
    def key(self) -> str:
        return self.spec.key

    def owner(self, task: Task) -> str:
        """Who holds a task's host ports."""
        return f"{self.key}#{task.index}"


class ServiceManager:
    """Applies, scales and deletes services, and keeps their tasks going."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.store = ServiceStore()
        self.services: dict[str, ServiceState] = {}
        self._by_job: dict[int, tuple[str, int]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._scrape_task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.scraper = Scraper(self._targets)
        sched.metrics.registry.register(ScrapeCollector(self.scraper))
        sched.hub.listen(self._on_event)

    async def start(self) -> None:
        """Load the services, take up their live tasks, and start reconciling."""
        for row in await self.sched.db.read(self.store.all):
            svc = ServiceState(row.tenant, row.spec, row.created_at, row.updated_at)
            self.services[svc.key] = svc
            where = JobFilter(labels=((SERVICE, svc.key),), states=LIVE_STATES, limit=10_000)
            for job in await self.sched.db.read(self.sched.jobs.find, where):
                index = int(job.labels[TASK])
                svc.tasks[index] = Task(
                    index,
                    job.labels.get(VERSION, ""),
                    "running" if job.state is JobState.RUNNING else "starting",
                    job.tags.get("hostname"),
                    job.service.host_ip if job.service else None,
                    task_ports(job),
                    job.id,
                )
                self._by_job[job.id] = (svc.key, index)
        self._loop_task = asyncio.create_task(self._run())
        self._scrape_task = asyncio.create_task(self.scraper.run())

    async def stop(self) -> None:
        """Stop reconciling and scraping (the tasks keep running)."""
        for task in (self._loop_task, self._scrape_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _targets(self) -> list[Target]:
        """The running tasks of services that ask to be scraped."""
        return [
            Target(
                svc.key,
                t.index,
                t.agent or "",
                f"http://{t.ip}:{t.ports[metrics.port]}{metrics.path}",
                metrics,
            )
            for svc in self.services.values()
            if (metrics := svc.spec.metrics) is not None and not svc.deleted
            for t in svc.tasks.values()
            if t.state == "running" and metrics.port in t.ports
        ]

    # -- the API's operations --------------------------------------------------------

    async def apply(self, who: Principal, spec: ServiceSpec) -> str:
        """Create or change a service: 'created', 'updated' or 'unchanged'."""
        tenant = who.tenant_for(spec.tenant)
        if tenant not in self.sched.tenants:
            raise NotFound(f"no tenant {tenant!r}")
        svc = self.services.get(spec.key)
        if svc is not None and not who.may_see(svc.tenant):
            raise Conflict(f"service {spec.key} belongs to another tenant")
        if svc is not None and svc.deleted:
            raise Conflict(f"service {spec.key} is being deleted; apply it again in a moment")
        if svc is not None and svc.spec == spec and svc.tenant == tenant:
            return "unchanged"
        now = self.sched.clock()
        await self.sched.db.write(self.store.save, tenant, spec, now)
        if svc is None:
            self.services[spec.key] = ServiceState(tenant, spec, now, now)
        else:
            svc.update(spec)
            svc.tenant, svc.updated_at = tenant, now
        self._wake.set()
        return "created" if svc is None else "updated"

    def get(self, who: Principal, key: str) -> ServiceState:
        """A service the caller may see."""
        svc = self.services.get(key)
        if svc is None or not who.may_see(svc.tenant):
            raise NotFound(f"no service {key}")
        return svc

    def visible(self, who: Principal) -> list[ServiceState]:
        """The services the caller may see (Forbidden for a worker token)."""
        who.scope()
        return [s for _, s in sorted(self.services.items()) if who.may_see(s.tenant)]

    async def scale(self, who: Principal, key: str, instances: int) -> ServiceState:
        """Run `instances` tasks of a service."""
        svc = self.get(who, key)
        spec = svc.spec.model_copy(update={"instances": instances})
        await self.sched.db.write(self.store.save, svc.tenant, spec, self.sched.clock())
        svc.update(spec)
        self._wake.set()
        return svc

    async def delete(self, who: Principal, key: str) -> None:
        """Stop every task of a service and forget it."""
        svc = self.get(who, key)
        await self.sched.db.write(self.store.delete, svc.spec.namespace, svc.spec.name)
        svc.deleted = True
        self._wake.set()

    def endpoints(self, svc: ServiceState) -> list[dict[str, Any]]:
        """The running tasks' addresses and ports."""
        return [
            {"task": t.index, "agent": t.agent, "ip": t.ip, "ports": t.ports}
            for _, t in sorted(svc.tasks.items())
            if t.state == "running"
        ]

    def pending_reason(self, svc: ServiceState) -> str | None:
        """Why tasks wait, if some do."""
        reasons = [t.reason for t in svc.tasks.values() if t.state == "pending" and t.reason]
        return reasons[0] if reasons else None

    # -- reconciling ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONCILE_SECONDS)
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:  # one bad round must not end the loop
                log.exception("reconciling services failed")

    async def reconcile(self) -> None:
        """One round: every service towards what its spec asks."""
        for key, svc in list(self.services.items()):
            if svc.deleted and not svc.tasks:
                del self.services[key]
                continue
            await self._reconcile(svc)

    async def _reconcile(self, svc: ServiceState) -> None:
        wanted = 0 if svc.deleted else svc.spec.instances
        usable = {w.name: w for w in self._usable()}
        for index, task in list(svc.tasks.items()):
            self._hold_ports(svc, task)
            if index >= wanted:
                await self._stop(svc, task, "scaled down" if not svc.deleted else "deleted")
            elif task.state == "starting" and task.agent not in usable:
                await self._stop(svc, task, f"agent {task.agent} is gone, disabled or draining")
        for index in range(wanted):
            svc.tasks.setdefault(index, Task(index, svc.version))
        await self._roll(svc)
        now = self.sched.clock()
        for task in sorted(svc.tasks.values(), key=lambda t: t.index):
            idle = task.job_id is None and task.state in ("pending", "backoff")
            if idle and task.index < wanted and now >= task.not_before:
                await self._place(svc, task, list(usable.values()))

    async def _roll(self, svc: ServiceState) -> None:
        """Move tasks to a changed spec, one at a time, while the others run."""
        for task in svc.tasks.values():
            if task.version != svc.version and task.job_id is None:
                task.version = svc.version  # not running: it will start with the new spec
        old = [t for t in svc.tasks.values() if t.version != svc.version]
        busy = any(t.state in ("stopping", "starting", "pending") for t in svc.tasks.values())
        if old and not busy:
            await self._stop(svc, old[0], "rolling over to a changed spec")

    async def _stop(self, svc: ServiceState, task: Task, reason: str) -> None:
        if task.job_id is None:
            self._release(svc, task)
            svc.tasks.pop(task.index, None)
            return
        if task.state != "stopping":
            task.state = "stopping"
            with contextlib.suppress(O11nError):  # it ended meanwhile
                await self.sched.cancel(ADMIN, task.job_id, reason=reason)

    def _usable(self) -> list[WorkerState]:
        """Agents that may take new tasks: online, enabled and not draining."""
        return [
            w
            for w in self.sched.workers.values()
            if self.sched.is_online(w) and not w.disabled and not w.draining
        ]

    def _live(self) -> list[LiveTask]:
        return [
            LiveTask(svc.key, t.agent, svc.spec.labels)
            for svc in self.services.values()
            for t in svc.tasks.values()
            if t.agent is not None and t.job_id is not None
        ]

    def _room(self, worker: WorkerState) -> ResourceKey:
        """A worker's free room less the tasks placed on it whose jobs wait in the queue."""
        free = self.sched.free(worker)
        for svc in self.services.values():
            for t in svc.tasks.values():
                if t.agent == worker.name and t.job_id is not None and t.job_id in self.sched.index:
                    free = subtract(free, svc.spec.resources.key())
        return free

    async def _place(self, svc: ServiceState, task: Task, usable: list[WorkerState]) -> None:
        """Choose an agent and ports for a task and submit its job; or say why not."""
        need = svc.spec.resources.key()
        tags = set(svc.spec.tags.items())
        fitting = [w for w in usable if tags <= w.tags and fits(need, self._room(w))]
        views = [w.view() for w in fitting]
        placement = Placement(svc.key, self._live(), views)
        mine = [t.agent for t in svc.tasks.values() if t.agent]
        ordered = sorted(fitting, key=lambda w: (mine.count(w.name), -self._room(w)[0], w.name))
        for worker in ordered:
            allowed = placement.check(svc.constraints, worker.view()) is None
            if allowed and self._take_ports(svc, task, worker):
                await self._submit(svc, task, worker)
                return
        task.state = "pending"
        task.reason = self._why_not(svc, usable, fitting, views)

    def _why_not(
        self,
        svc: ServiceState,
        usable: list[WorkerState],
        fitting: list[WorkerState],
        views: list[AgentView],
    ) -> str:
        """Why no agent can take a task: the constraints rule out every usable agent, or
        those they allow lack room, or those with room are ruled out, or ports ran out."""
        if not usable:
            return "no agent is online and enabled"
        live = self._live()
        everyone = why_unplaceable(svc.constraints, [w.view() for w in usable], svc.key, live)
        if everyone is not None:
            return everyone
        if not fitting:
            return "no agent has the tags and free resources the service needs"
        why = why_unplaceable(svc.constraints, views, svc.key, live)
        return why or "no agent has the host ports the service needs free"

    def _take_ports(self, svc: ServiceState, task: Task, worker: WorkerState) -> bool:
        owner = svc.owner(task)
        fixed = [p for p in svc.spec.ports if p.hostPort]
        free = [p for p in svc.spec.ports if not p.hostPort]
        try:
            for port in fixed:
                worker.ports.reserve(port.hostPort, owner)
            chosen = worker.ports.allocate(len(free), owner)
        except Conflict:
            worker.ports.release(owner)
            return False
        task.ports = {p.name: p.hostPort for p in fixed} | {
            p.name: n for p, n in zip(free, chosen, strict=True)
        }
        return True

    def _hold_ports(self, svc: ServiceState, task: Task) -> None:
        """Keep a task's ports taken in its agent's pool (after a restart of either)."""
        worker = self.sched.workers.get(task.agent or "")
        if worker is None or task.job_id is None:
            return
        for port in task.ports.values():
            with contextlib.suppress(Conflict):
                worker.ports.reserve(port, svc.owner(task))

    def _release(self, svc: ServiceState, task: Task) -> None:
        worker = self.sched.workers.get(task.agent or "")
        if worker is not None:
            worker.ports.release(svc.owner(task))

    async def _submit(self, svc: ServiceState, task: Task, worker: WorkerState) -> None:
        spec = svc.spec
        job = JobSpec(
            command=spec.command,
            image=spec.image,
            name=f"{svc.key}#{task.index}"[:200],
            tenant=svc.tenant,
            env=spec.env,
            service=ServiceTask(
                service=svc.key, index=task.index, host_ip=worker.address, ports=task.ports
            ),
            tags={**spec.tags, "hostname": worker.name},
            resources=spec.resources,
            timeout=MAX_TIMEOUT_S,
            retry=RetryPolicy(max_attempts=1, when=[]),
            labels={SERVICE: svc.key, TASK: str(task.index), VERSION: svc.version},
        )
        try:
            (submitted,) = await self.sched.submit(ADMIN, [job])
        except O11nError as exc:
            self._release(svc, task)
            task.state, task.reason = "pending", f"cannot submit: {exc.message}"
            return
        task.job_id, task.agent, task.ip = submitted.id, worker.name, worker.address
        task.state, task.reason, task.version = "starting", None, svc.version
        self._by_job[submitted.id] = (svc.key, task.index)

    # -- following the tasks' jobs ----------------------------------------------------

    def _on_event(self, event: Event) -> None:
        where = self._by_job.get(event.job_id)
        if where is None:
            return
        svc = self.services.get(where[0])
        task = svc.tasks.get(where[1]) if svc else None
        if svc is None or task is None or task.job_id != event.job_id:
            self._by_job.pop(event.job_id, None)
            return
        state = JobState(event.state)
        if state is JobState.RUNNING and task.state == "starting":
            task.state, task.started_at = "running", event.at
        elif state.terminal:
            self._by_job.pop(event.job_id, None)
            pending = asyncio.get_running_loop().create_task(self._ended(svc, task, event))
            self._pending.add(pending)
            pending.add_done_callback(self._pending.discard)

    async def _ended(self, svc: ServiceState, task: Task, event: Event) -> None:
        job = await self.sched.db.read(self.sched.jobs.get, event.job_id)
        self._release(svc, task)
        task.last_exit = _exit_text(job.state if job else JobState(event.state), job)
        stopped = task.state == "stopping"
        ran = (event.at - task.started_at) if task.started_at is not None else 0.0
        task.job_id, task.agent, task.ip, task.ports, task.started_at = None, None, None, {}, None
        if stopped:
            svc.tasks.pop(task.index, None)  # scaled down, deleted, or rolled: placed anew
        else:
            task.restarts += 1
            task.failures = 1 if ran >= STABLE_SECONDS else task.failures + 1
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (task.failures - 1))
            task.state, task.not_before = "backoff", self.sched.clock() + delay
            task.reason = f"exited ({task.last_exit}); restarting in {delay:g}s"
        self._wake.set()


def _exit_text(state: JobState, job: Any) -> str:
    if job is not None and job.exit_code is not None:
        return f"{state.value}, exit code {job.exit_code}"
    reason = getattr(job, "reason", None)
    return f"{state.value}: {reason}" if reason else state.value
