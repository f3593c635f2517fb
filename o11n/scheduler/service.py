"""The scheduler: the one place where jobs are queued, matched, leased and ended.

Every decision is taken on one event loop, so a job can never be handed out
twice; every change is committed to the store before anyone hears of it; and
memory (the queue index, the lease book) is rebuilt from the store at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

from o11n.core.jobs import Event, Job, JobSpec
from o11n.core.leases import Lease, LeaseBook
from o11n.core.matching import Match, QueueIndex, ResourceKey, add, as_tags, subtract
from o11n.core.ports import PortPool
from o11n.core.retry import Outcome, after_attempt
from o11n.core.states import JobState, transition
from o11n.errors import Conflict, Forbidden, LeaseExpired, NotFound, NotRegistered
from o11n.scheduler.attempts import AttemptReport, Ending, Grant, Report, ending_of
from o11n.scheduler.auth import TENANT, WORKER, Principal, TokenBook, hash_token, new_token
from o11n.scheduler.hub import EventHub
from o11n.scheduler.metrics import LEASE_EXPIRED, Metrics
from o11n.scheduler.workers import AgentSettings, WorkerState, binding
from o11n.store.accounts import AccountStore, Registration, TenantRow, TokenRow
from o11n.store.database import Database
from o11n.store.jobs import AttemptEnd, JobFilter, JobStore, StartRow, Submitted
from o11n.store.logs import LogChunk, LogStore

log = logging.getLogger(__name__)
DEFAULT_TENANT = "default"
ALIVE_FRACTION = 0.75  # of a lease: a worker silent for longer gets no new work


class Scheduler:
    """Queues, matches, leases and ends jobs; owns the in-memory index and lease book."""

    def __init__(
        self,
        db: Database,
        admin_token: str,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 30.0,
        reap_interval: float | None = None,
    ) -> None:
        self.db = db
        self.reap_interval = reap_interval or max(0.05, min(1.0, lease_seconds / 4))
        self.clock = clock
        self.jobs = JobStore(db)
        self.logs = LogStore(db)
        self.accounts = AccountStore(db)
        self.index = QueueIndex()
        self.leases = LeaseBook(clock, lease_seconds)
        self.tokens = TokenBook(admin_token)
        self.hub = EventHub()
        self.metrics = Metrics(self.index.counts_by_tenant)
        self.hub.listen(self.metrics.on_event)
        self.workers: dict[str, WorkerState] = {}
        self.agents: dict[str, AgentSettings] = {}  # every agent ever registered
        self.tenants: dict[str, TenantRow] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.closing = False
        self._lease_key = secrets.token_bytes(32)
        self._leases_issued = 0

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Rebuild memory from the store and start the lease reaper."""
        for token in self.db.read_now(self.accounts.tokens):
            self.tokens.add(token)
        for tenant in self.db.read_now(self.accounts.tenants):
            self._know_tenant(tenant)
        for row in self.db.read_now(self.accounts.workers):
            self.agents[row.name] = AgentSettings(
                dict(row.attributes), row.disabled, row.token_hash
            )
        if DEFAULT_TENANT not in self.tenants:
            await self.create_tenant(DEFAULT_TENANT, 1.0, with_token=False)
        for job in self.db.read_now(self.jobs.active):
            if job.state is JobState.QUEUED:
                self._enqueue(job.id, job.tenant, job.spec)
            elif job.worker and job.lease_id:
                lease = Lease(job.id, job.attempt, job.lease_id, job.worker, job.tenant, job.spec)
                lease.running = job.state is JobState.RUNNING
                self.leases.grant(lease)  # its worker has one lease period to report back
        self.metrics.load_counts(self.db.read_now(self.jobs.count_by_state))
        self._reaper = asyncio.create_task(self._reap_forever())

    def close_polls(self) -> None:
        """The server is shutting down: answer every long-poll and watcher now."""
        self.closing = True
        for worker in self.workers.values():
            worker.wake.set()
            worker.control.set()
        self.hub.close()

    async def stop(self) -> None:
        """Stop the reaper and release long-polling workers."""
        self.close_polls()
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper

    # -- tenants and tokens ---------------------------------------------------

    async def create_tenant(self, name: str, weight: float, with_token: bool = True) -> str | None:
        """Create a tenant (or reweigh it); returns a new token for it."""
        row = await self.db.write(self.accounts.add_tenant, name, weight, self.clock())
        self._know_tenant(row)
        return await self._issue_token(TENANT, name) if with_token else None

    async def new_worker_token(self) -> str:
        """A token for workers to register and take work with."""
        return await self._issue_token(WORKER, None)

    async def _issue_token(self, role: str, tenant: str | None) -> str:
        token = new_token(role)
        digest = hash_token(token)
        await self.db.write(self.accounts.add_token, digest, role, tenant, self.clock())
        self.tokens.add(TokenRow(digest, role, tenant))
        return token

    def _know_tenant(self, row: TenantRow) -> None:
        self.tenants[row.name] = row
        self.index.fairness.set_weight(row.name, row.weight)

    # -- submit ---------------------------------------------------------------

    async def submit(self, who: Principal, specs: Sequence[JobSpec]) -> list[Submitted]:
        """Store jobs durably, then queue them; returns once they are committed."""
        items = [(spec, self._tenant_of(who, spec)) for spec in specs]
        results = await self.db.write(self.jobs.insert, items, self.clock())
        for (spec, tenant), result in zip(items, results, strict=True):
            if result.created and result.event is not None:
                self._enqueue(result.id, tenant, spec)
                self.hub.publish(result.event)
        if any(r.created for r in results):
            for worker in self.workers.values():
                worker.wake.set()
        return results

    def _tenant_of(self, who: Principal, spec: JobSpec) -> str:
        tenant = who.tenant_for(spec.tenant)
        if tenant not in self.tenants:
            raise NotFound(f"no tenant {tenant!r}: create it with 'o11n tenants create'")
        return tenant

    def _enqueue(self, job_id: int, tenant: str, spec: JobSpec) -> None:
        self.index.add(
            job_id,
            tenant,
            spec.priority,
            as_tags(spec.tags),
            spec.resources.key(),
            spec.placement(),
        )

    # -- workers --------------------------------------------------------------

    async def register(
        self,
        name: str,
        tags: dict[str, str],
        capacity: ResourceKey,
        address: str = "127.0.0.1",
        ports: str = "31000-32000",
        disk: int = 0,
        by: Principal | None = None,
    ) -> WorkerState:
        """Add a worker (or refresh it after its restart or ours); the attributes and
        disabled flag the platform team set on it stay. A worker token (`by`) binds the
        name to itself: another worker token may not register it (Forbidden)."""
        bound = self.agents[name].token_hash if name in self.agents else None
        token_hash = binding(by, name, bound)
        known = self.agents.setdefault(name, AgentSettings())
        known.token_hash = token_hash  # claimed now: a registration racing this one sees it
        now = self.clock()
        cap = {"cpu": capacity[0], "memory": capacity[1], "gpu": capacity[2]}
        reg = Registration(tags, cap, address, ports, disk, token_hash)
        await self.db.write(self.accounts.save_worker, name, reg, now)
        old = self.workers.get(name)
        worker = WorkerState(
            name,
            tags,
            capacity,
            now,
            now,
            address=address,
            ports=old.ports if old is not None else PortPool.from_range(ports),
            disk=disk,
            attributes=dict(known.attributes),
            disabled=known.disabled,
        )
        self.agents[name] = AgentSettings(worker.attributes, worker.disabled, token_hash)
        if old is not None:
            worker.draining = old.draining
            old.wake.set()
            old.control.set()
        self.workers[name] = worker
        return worker

    async def unbind(self, name: str) -> None:
        """Free a worker's name for the next worker token that registers it: the scheduler
        is about to start a new worker of that name (the autoscaler reuses names)."""
        known = self.agents.get(name)
        if known is not None and known.token_hash is not None:
            await self.db.write(self.accounts.bind_worker, name, None)
            known.token_hash = None

    def act_as(self, who: Principal, name: str) -> None:
        """Forbidden unless the caller may act as worker `name`: the admin as any worker, a
        worker token as those it registered. NotRegistered (the worker registers again)
        for a name no worker token has registered: one the admin did, or one from before
        names were bound (an upgrade), or one the autoscaler freed."""
        who.require(WORKER)
        if who.is_admin:
            return
        known = self.agents.get(name)
        if known is None or known.token_hash is None:
            raise NotRegistered(f"worker {name!r} is not registered")
        if known.token_hash != who.key:
            raise Forbidden(f"worker {name!r} was registered with another token")

    def act_for_attempt(self, who: Principal, job_id: int, attempt: int) -> None:
        """Forbidden unless the caller may act as the worker that holds the job's lease (the
        lease check that follows refuses an attempt that holds none)."""
        lease = self.leases.get(job_id)
        if lease is not None and lease.attempt == attempt:
            self.act_as(who, lease.worker)
        else:
            who.require(WORKER)

    async def set_attribute(self, names: list[str], key: str, value: str | float | None) -> None:
        """Set (or, with None, delete) an attribute on agents; jobs match it at once."""
        unknown = [n for n in names if n not in self.agents]
        if unknown:
            raise NotFound(f"no agent {unknown[0]!r}: it must have registered once")
        for name in names:
            settings = self.agents[name]
            if value is None:
                settings.attributes.pop(key, None)
            else:
                settings.attributes[key] = value
            await self._save_agent(name)

    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable an agent (it gets no new work; what it runs goes on) or enable it."""
        if name not in self.agents:
            raise NotFound(f"no agent {name!r}: it must have registered once")
        self.agents[name].disabled = disabled
        await self._save_agent(name)

    async def _save_agent(self, name: str) -> None:
        settings = self.agents[name]
        await self.db.write(self.accounts.set_agent, name, settings.attributes, settings.disabled)
        worker = self.workers.get(name)
        if worker is not None:
            worker.attributes, worker.disabled = settings.attributes, settings.disabled
            worker.refresh_tags()
            worker.wake.set()

    def worker(self, name: str) -> WorkerState:
        """A registered worker, or NotFound (the worker should register again)."""
        worker = self.workers.get(name)
        if worker is None:
            raise NotRegistered(f"worker {name!r} is not registered")
        return worker

    def free(self, worker: WorkerState) -> ResourceKey:
        """What a worker has free: capacity less leased and reserved jobs."""
        return subtract(
            subtract(worker.capacity, self.leases.used_by(worker.name)), worker.reserved
        )

    def drain(self, name: str) -> None:
        """Give a worker no more work; it finishes what it runs and exits."""
        worker = self.worker(name)
        worker.draining = True
        worker.wake.set()
        worker.control.set()

    async def lease(
        self,
        name: str,
        max_jobs: int,
        wait: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[Grant]:
        """Up to `max_jobs` jobs for a worker, waiting up to `wait` seconds for one.

        A poll that outlived its worker must not take work: after each wait it checks
        that the worker still heartbeats and (`gone`) that the caller is still there.
        """
        worker = self.worker(name)
        worker.last_seen = self.clock()
        deadline = time.monotonic() + wait
        waited = False
        while True:
            worker.wake.clear()
            if worker.draining or self.closing or self.workers.get(name) is not worker:
                return []
            if waited and (not self._alive(worker) or (gone is not None and await gone())):
                return []
            grants = await self._dispatch(worker, max_jobs)
            remaining = deadline - time.monotonic()
            if grants or remaining <= 0:
                return grants
            try:
                await asyncio.wait_for(worker.wake.wait(), remaining)
            except TimeoutError:
                return []
            waited = True

    def is_online(self, worker: WorkerState) -> bool:
        """Has the worker been heard from within a lease period?"""
        return self.clock() - worker.last_seen < self.leases.duration

    def _alive(self, worker: WorkerState) -> bool:
        """Has the worker heartbeated lately? (It does every third of a lease.)"""
        return self.clock() - worker.last_seen <= self.leases.duration * ALIVE_FRACTION

    async def _dispatch(
        self, worker: WorkerState, max_jobs: int, freeing: ResourceKey = (0.0, 0, 0)
    ) -> list[Grant]:
        """Take jobs that fit the worker's free room (plus `freeing`: attempts ending in
        the same commit) off the index and assign them to it."""
        if worker.disabled:
            return []
        free = add(self.free(worker), freeing)
        picks: list[Match] = []
        while len(picks) < max_jobs:
            match = self.index.consume(worker.tags, free)
            if match is None:
                break
            picks.append(match)
            free = subtract(free, match.resources)
        if not picks:
            return []
        taken = (
            sum(m.resources[0] for m in picks),
            sum(m.resources[1] for m in picks),
            sum(m.resources[2] for m in picks),
        )
        worker.reserved = add(worker.reserved, taken)
        try:
            return await self._assign(worker, picks)
        except BaseException:
            for m in picks:
                self.index.add(m.job_id, m.tenant, m.priority, m.tags, m.resources, m.constraints)
                self.index.fairness.charge(m.tenant, -1.0)  # it was not served after all
            raise
        finally:
            worker.reserved = subtract(worker.reserved, taken)

    async def _assign(self, worker: WorkerState, picks: list[Match]) -> list[Grant]:
        now = self.clock()
        pairs = [(m.job_id, self._new_lease_id()) for m in picks]
        assigned = await self.db.write(self.jobs.assign, pairs, worker.name, now)
        grants = []
        for a in assigned:
            spec = JobSpec.model_validate_json(a.spec)
            lease = self.leases.grant(
                Lease(a.id, a.attempt, a.lease_id, worker.name, a.tenant, spec)
            )
            self.metrics.dispatch_latency.observe(max(0.0, now - a.queued_at))
            self.hub.publish(a.event)
            grants.append(
                Grant(a.id, a.tenant, a.name, a.attempt, a.lease_id, lease.expires_at, spec)
            )
        if len(assigned) < len(picks):
            log.warning("%d picked jobs were no longer queued", len(picks) - len(assigned))
        return grants

    def _new_lease_id(self) -> str:
        """An unguessable lease id: a keyed hash of a counter (the OS's randomness costs
        0.15 ms a draw on a VM; this, a microsecond)."""
        self._leases_issued += 1
        count = self._leases_issued.to_bytes(8, "big")
        return hashlib.blake2b(count, key=self._lease_key, digest_size=16).hexdigest()

    async def heartbeat(
        self,
        name: str,
        held: Sequence[tuple[int, int, str]],
        wait: float = 0.0,
        draining: bool = False,
    ) -> tuple[list[int], bool]:
        """Renew the leases a worker holds; answer the jobs it must stop and whether to drain.

        With `wait`, the answer is held until there is something to stop, the worker
        is drained, or `wait` seconds pass: the worker keeps one heartbeat open, and a
        cancel reaches it at once.
        """
        if draining:
            self.drain(name)  # the worker is stopping (SIGTERM): give it no more work
        worker = self.worker(name)
        worker.control.clear()
        stop = self._renew(worker, held)
        if not stop and not worker.draining and not self.closing and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.control.wait(), wait)
            stop = [
                job_id
                for job_id, attempt, lease_id in held
                if self._held(job_id, attempt, lease_id, name) is None
            ]
        return stop, worker.draining

    def _held(self, job_id: int, attempt: int, lease_id: str, worker: str) -> Lease | None:
        """The live, uncancelled lease `worker` claims, or None (also when it is another's)."""
        lease = self.leases.get(job_id)
        if lease is None or (lease.attempt, lease.lease_id) != (attempt, lease_id):
            return None
        return None if lease.cancelled or lease.worker != worker else lease

    def _renew(self, worker: WorkerState, held: Sequence[tuple[int, int, str]]) -> list[int]:
        name = worker.name
        worker.last_seen = self.clock()
        stop = []
        reported = set()
        for job_id, attempt, lease_id in held:
            reported.add(job_id)
            lease = self._held(job_id, attempt, lease_id, name)
            if lease is None:
                stop.append(job_id)
            else:
                self.leases.renew(lease)
        for lease in self.leases.of_worker(name):
            if lease.cancelled and lease.job_id not in reported:
                self._release(lease)  # the worker has stopped it
        return stop

    def _release(self, lease: Lease) -> None:
        """End a lease; its worker's free room may now fit more work."""
        self.leases.release(lease.job_id)
        worker = self.workers.get(lease.worker)
        if worker is not None:
            worker.wake.set()

    # -- attempts -------------------------------------------------------------

    async def started(self, job_id: int, attempt: int, lease_id: str, at: float | None) -> None:
        """An assigned attempt has started its command."""
        lease = self.leases.check(job_id, attempt, lease_id)
        if lease.cancelled:
            raise Conflict(f"job {job_id} was cancelled")
        if not lease.running:
            (ok,) = await self._start_many([(lease, at)])
            if not ok:
                raise LeaseExpired(f"job {job_id} attempt {attempt} lost its lease")

    async def finished(
        self, job_id: int, attempt: int, lease_id: str, report: Report, started: bool = False
    ) -> JobState:
        """An attempt has ended; the job ends, or is queued for another attempt.

        `started`: it also started since the last report; both are recorded in one write.
        """
        lease = self.leases.check(job_id, attempt, lease_id)
        if lease.cancelled:
            self._release(lease)
            return JobState.CANCELLED
        (state,) = await self._end_many([ending_of(lease, report, started and not lease.running)])
        if state is None:
            raise LeaseExpired(f"job {job_id} attempt {attempt} lost its lease")
        return state

    async def report(
        self, reports: Sequence[AttemptReport], worker: str | None = None, max_jobs: int = 0
    ) -> tuple[list[JobState | str], list[Grant]]:
        """Apply a batch of starts and results; per report the job's state after it, or
        why it was refused. With `worker` and `max_jobs`, the room the ended attempts free
        is filled at once: new jobs are assigned in the same commit and returned, so a
        busy worker goes from one job to the next without another round trip."""
        answers: list[JobState | str] = [JobState.RUNNING] * len(reports)
        starts: list[tuple[int, Lease, float | None]] = []
        ends: list[tuple[int, Ending]] = []
        for i, r in enumerate(reports):
            try:
                lease = self.leases.check(r.job_id, r.attempt, r.lease_id)
            except Conflict as exc:
                answers[i] = exc.message
                continue
            if worker is not None and lease.worker != worker:
                answers[i] = f"job {r.job_id} attempt {r.attempt} is not leased to {worker}"
                continue
            if lease.cancelled:
                if r.result is not None:
                    self._release(lease)  # the worker has stopped it
                answers[i] = JobState.CANCELLED
            elif r.result is not None:
                both = r.started_at is not None and not lease.running
                ends.append((i, ending_of(lease, r.result, both)))
            elif r.started_at is not None and not lease.running:
                starts.append((i, lease, r.started_at))
        started, ended, grants = await asyncio.gather(
            self._start_many([(lease, at) for _, lease, at in starts]),
            self._end_many([ending for _, ending in ends]),
            self._refill(worker, max_jobs, [ending.lease for _, ending in ends]),
        )
        for (i, lease, _), ok in zip(starts, started, strict=True):
            answers[i] = JobState.RUNNING if ok else f"job {lease.job_id} lost its lease"
        for (i, ending), state in zip(ends, ended, strict=True):
            answers[i] = state if state is not None else f"job {ending.lease.job_id} lost its lease"
        return answers, grants

    async def _refill(self, name: str | None, max_jobs: int, ending: list[Lease]) -> list[Grant]:
        worker = self.workers.get(name) if name else None
        if not max_jobs or worker is None or worker.draining or self.closing:
            return []
        needs = [lease.spec.resources for lease in ending if lease.worker == worker.name]
        freeing = (
            sum(r.cpu for r in needs),
            sum(r.memory for r in needs),
            sum(r.gpu for r in needs),
        )
        return await self._dispatch(worker, max_jobs, freeing)

    async def _start_many(self, starts: list[tuple[Lease, float | None]]) -> list[bool]:
        if not starts:
            return []
        for _ in starts:
            transition(JobState.ASSIGNED, JobState.RUNNING)
        rows = [
            StartRow(lease.job_id, lease.tenant, lease.attempt, lease.worker, at)
            for lease, at in starts
        ]
        events = await self.db.write(self.jobs.start_many, rows, self.clock())
        for (lease, _), event in zip(starts, events, strict=True):
            if event is not None:
                lease.running = True
                self.leases.renew(lease)
                self.hub.publish(event)
        return [event is not None for event in events]

    async def _end_many(self, endings: list[Ending]) -> list[JobState | None]:
        """Record how attempts ended, in one write; per attempt the job's new state, or
        None if the attempt no longer held its job (an expiry or a cancel came first)."""
        if not endings:
            return []
        rows = [e.row(self._next_state(e)) for e in endings]
        results = await self.db.write(self.jobs.end_many, rows, self.clock())
        states: list[JobState | None] = []
        for ending, row, events in zip(endings, rows, results, strict=True):
            states.append(None if events is None else row.state)
            if events is not None:
                self._ended(ending.lease, row.state, events)
        return states

    def _next_state(self, ending: Ending) -> JobState:
        lease = ending.lease
        previous = JobState.RUNNING if lease.running else JobState.ASSIGNED
        last = transition(previous, JobState.RUNNING) if ending.started else previous
        return transition(last, after_attempt(lease.spec.retry, lease.attempt, ending.outcome))

    def _ended(self, lease: Lease, state: JobState, events: list[Event]) -> None:
        if self.leases.get(lease.job_id) is lease:
            self._release(lease)
        if state is JobState.QUEUED:
            self._enqueue(lease.job_id, lease.tenant, lease.spec)
            for worker in self.workers.values():
                worker.wake.set()
        for event in events:
            self.hub.publish(event)

    async def reap(self) -> int:
        """End attempts whose lease ran out; returns how many."""
        return await self._lose(
            self.leases.expired(),
            lambda lease: f"{LEASE_EXPIRED}: worker {lease.worker} stopped reporting",
        )

    async def lose_worker(self, name: str, reason: str) -> int:
        """A worker is gone for good (its spot instance was reclaimed): it gets no more work,
        and its attempts end as lost now, not when their leases run out; returns how many."""
        worker = self.workers.get(name)
        if worker is not None:
            worker.draining = True
            worker.wake.set()
            worker.control.set()
        return await self._lose(self.leases.of_worker(name), lambda _lease: reason)

    async def _lose(self, leases: list[Lease], reason_of: Callable[[Lease], str]) -> int:
        """End these attempts as lost (requeued by their retry policy); cancelled ones are
        just released."""
        endings = []
        for lease in leases:
            if lease.cancelled:
                self._release(lease)
                continue
            reason = reason_of(lease)
            endings.append(
                Ending(lease, Outcome("lost", None, reason), AttemptEnd("lost", reason=reason))
            )
        await self._end_many(endings)
        return len(endings)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("lease reaper failed; retrying")

    # -- cancel ---------------------------------------------------------------

    async def cancel(self, who: Principal, job_id: int, reason: str = "cancelled") -> JobState:
        """Cancel a queued or running job; a running one is stopped by its worker."""
        for _ in range(3):
            tenant, state, attempt = await self.head(who, job_id)
            lease = self.leases.get(job_id)
            if job_id in self.index:
                state = JobState.QUEUED
            elif lease is not None:
                state = JobState.RUNNING if lease.running else JobState.ASSIGNED
            transition(state, JobState.CANCELLED)
            removed = state is JobState.QUEUED and self.index.remove(job_id, tenant)
            event = await self.db.write(
                self.jobs.cancel, job_id, tenant, state, attempt, self.clock(), reason
            )
            if event is not None:
                if lease is not None and self.leases.get(job_id) is lease:
                    lease.cancelled = True
                    if lease.worker in self.workers:
                        self.workers[lease.worker].control.set()
                self.hub.publish(event)
                return JobState.CANCELLED
            if removed:
                raise AssertionError(f"job {job_id} was queued in memory but not in the store")
        raise Conflict(f"job {job_id} kept changing state; try again")

    # -- reads ----------------------------------------------------------------

    async def head(self, who: Principal, job_id: int) -> tuple[str, JobState, int]:
        """A job's tenant, state and attempt, if the caller may see it."""
        head = await self.db.read(self.jobs.head, job_id)
        if head is None or not who.may_see(head[0]):
            raise NotFound(f"no job {job_id}")
        return head

    async def get_job(self, who: Principal, job_id: int) -> Job:
        """One job with its attempts."""
        job = await self.db.read(self.jobs.get, job_id)
        if job is None or not who.may_see(job.tenant):
            raise NotFound(f"no job {job_id}")
        for attempt in job.attempts:
            lease = self.leases.get(job_id)
            if attempt.state != "ended" and lease is not None and lease.attempt == attempt.number:
                attempt.lease_expires_at = lease.expires_at
        return job

    async def list_jobs(self, who: Principal, where: JobFilter) -> list[Job]:
        """Jobs a caller may see, newest first."""
        scope = who.scope()
        if scope is not None:
            if where.tenant not in (None, scope):
                return []
            where = JobFilter(
                scope, where.states, where.tags, where.labels, where.before_id, where.limit
            )
        return await self.db.read(self.jobs.find, where)

    async def events(self, who: Principal, job_id: int, after: int = 0) -> list[Event]:
        """A job's events after event id `after`."""
        await self.head(who, job_id)
        return await self.db.read(self.jobs.events, job_id=job_id, after=after)

    async def read_logs(
        self, who: Principal, job_id: int, after: tuple[int, int] = (0, -1), limit: int = 1000
    ) -> list[LogChunk]:
        """A job's log chunks after (attempt, seq)."""
        await self.head(who, job_id)
        return await self.db.read(self.logs.read, job_id, after=after, limit=limit)

    async def append_logs(
        self, job_id: int, attempt: int, lease_id: str, chunks: Sequence[tuple[int, str, bytes]]
    ) -> int:
        """Store log chunks of a leased attempt; a chunk sent twice is kept once."""
        lease = self.leases.check(job_id, attempt, lease_id)
        now = self.clock()
        rows = [LogChunk(job_id, attempt, seq, stream, now, data) for seq, stream, data in chunks]
        stored = await self.db.write(self.logs.append, rows)
        for chunk in stored:
            self.hub.publish_log(job_id, lease.tenant, log_message(chunk))
        return len(stored)


def log_message(chunk: LogChunk) -> dict[str, object]:
    """The watch-stream form of a log chunk."""
    return {
        "type": "log",
        "job_id": chunk.job_id,
        "attempt": chunk.attempt,
        "seq": chunk.seq,
        "stream": chunk.stream,
        "at": chunk.at,
        "data": chunk.data.decode("utf-8", errors="replace"),
    }
