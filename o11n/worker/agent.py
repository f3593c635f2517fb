"""The worker agent: register, long-poll for jobs, run them, keep their leases, report.

Three loops share one connection pool: the lease loop asks for as many jobs as
the scheduler will fit; the heartbeat loop keeps one heartbeat open (it renews
the leases and brings cancels and drain at once); the reporter sends the
starts and results of all attempts in batches. Every call retries until the
scheduler answers, so a scheduler restart is a pause: jobs run on, and their
logs and results land when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from o11n.core.jobs import JobSpec
from o11n.errors import O11nError
from o11n.worker import host
from o11n.worker.api import WorkerApi
from o11n.worker.executor import Attempt, Ended, Executor, Runner
from o11n.worker.files import Files
from o11n.worker.logs import LogShipper
from o11n.worker.reports import Reporter
from o11n.worker.sandbox import DEFAULT_UIDS, Sandbox
from o11n.worker.watchdog import Watchdog, attempt_key

log = logging.getLogger(__name__)
MAX_JOBS_PER_POLL = 64
LEASE_POLL_SECONDS = 20.0
REPORT_GRACE = 10.0  # seconds a draining worker keeps trying to report before it exits


@dataclass(frozen=True)
class WorkerConfig:
    """A worker's identity, what it offers, and how it runs jobs."""

    name: str
    tags: dict[str, str]
    cpus: float
    memory: int
    gpus: int
    workdir: Path
    address: str = "127.0.0.1"
    ports: str = "31000-32000"
    executor: str = "auto"  # auto | process | container
    allow_images: tuple[str, ...] = ("*",)
    pull_timeout: float = 300.0
    container_reuse: bool = True
    keep_workdirs: bool = False
    kill_grace: float = 10.0
    drain_timeout: float = 600.0
    cache_cap: int | None = 10 * 2**30  # the local blob cache (workspaces, inputs)
    sandbox: bool = True  # process jobs under bubblewrap, each as a uid of its own
    sandbox_uids: range = DEFAULT_UIDS
    default_memory: int = 2 * 2**30  # the memory limit of container jobs that ask for none


@dataclass
class Running:
    """An attempt this worker holds."""

    job_id: int
    attempt: int
    lease_id: str
    tenant: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str = ""

    @property
    def key(self) -> str:
        """The attempt's name for the watchdog."""
        return attempt_key(self.job_id, self.attempt)

    def halt(self, reason: str) -> None:
        """Stop the attempt's command (SIGTERM, then SIGKILL after the grace period)."""
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()


class Agent:
    """One worker: runs until drained (by SIGTERM or `o11n workers drain`)."""

    def __init__(self, api: WorkerApi, config: WorkerConfig) -> None:
        self.api = api
        self.config = config
        self.watchdog = Watchdog()
        self.executor = Executor(
            config.workdir,
            files=Files(api, config.workdir / ".cas", config.cache_cap),
            containers=_containers(config, self.watchdog),
            mode=config.executor,
            sandbox=Sandbox(config.workdir, config.sandbox_uids) if config.sandbox else None,
            watchdog=self.watchdog,
            keep_workdirs=config.keep_workdirs,
            kill_grace=config.kill_grace,
        )
        self.lease_seconds = 30.0
        self.reporter = Reporter(api, config.name, self._lost, self._take, self._room)
        self.running: dict[int, Running] = {}
        self.heartbeat_seconds = 10.0
        self.draining = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()  # attempts, and jobs given back
        self._side: set[asyncio.Task[None]] = set()
        api.on_unregistered = self.register
        api.on_refused = self._scheduler_down

    async def register(self) -> None:
        """Tell the scheduler who this worker is and what it offers."""
        c = self.config
        body = {
            "name": c.name,
            "tags": c.tags,
            "cpu": c.cpus,
            "memory": c.memory,
            "gpu": c.gpus,
            "address": c.address,
            "ports": c.ports,
            "disk": host.free_disk(c.workdir),
        }
        answer = await self.api.call("/api/v1/workers/register", body, register_again=False)
        self.heartbeat_seconds = float(answer["heartbeat_seconds"])
        self.lease_seconds = float(answer["lease_seconds"])
        log.info("registered as %s with %s", c.name, self.api.server)

    async def run(self) -> None:
        """Work until drained, then wait for running attempts (up to the drain timeout)."""
        await asyncio.to_thread(self.executor.sweep, self.config.name)
        self.watchdog.start()
        await self.register()
        loops = [
            asyncio.create_task(self._keep(self._lease_loop, "the lease loop")),
            asyncio.create_task(self._keep(self._heartbeat_loop, "the heartbeat loop")),
            asyncio.create_task(self._keep(self.reporter.run, "the reporter")),
        ]
        try:
            await self.draining.wait()
            await self._finish_running()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await asyncio.to_thread(self.executor.close)  # no warm container outlives it
            await asyncio.to_thread(self.watchdog.close)

    async def _keep(self, loop: Callable[[], Awaitable[None]], what: str) -> None:
        """Run a loop; if the scheduler refuses a call outright, say so and start it again
        (a worker must not fall silent while it looks alive)."""
        while True:
            try:
                await loop()
                return
            except O11nError as exc:
                log.error("%s stopped: %s; starting it again", what, exc.message)
                await asyncio.sleep(1.0)

    def drain(self, tell_scheduler: bool = True) -> None:
        """Take no new work; finish what runs. The scheduler is told at once, so that
        it stops handing this worker jobs."""
        if self.draining.is_set():
            return
        log.info("draining: %d jobs running", len(self.running))
        self.draining.set()
        if tell_scheduler:
            task = asyncio.create_task(self._heartbeat(0.0, draining=True))
            self._side.add(task)
            task.add_done_callback(self._side.discard)

    async def _finish_running(self) -> None:
        """Let attempts finish until the drain timeout, then stop them; give up on the
        scheduler after a grace period (an unreported attempt is requeued when its lease
        expires)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while self._tasks and loop.time() < deadline:  # a poll in flight may still add some
            await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())
        if self._tasks:
            for running in list(self.running.values()):
                running.halt(f"worker {self.config.name} drained: past its drain timeout")
            await asyncio.wait(set(self._tasks), timeout=self.config.kill_grace + REPORT_GRACE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reporter.flush(), REPORT_GRACE)

    async def _lease_loop(self) -> None:
        body = {"max_jobs": MAX_JOBS_PER_POLL, "wait": LEASE_POLL_SECONDS}
        path = f"/api/v1/workers/{self.config.name}/lease"
        while not self.draining.is_set():
            answer = await self.api.call(path, body, wait=LEASE_POLL_SECONDS)
            for grant in answer["jobs"]:
                self._take(grant)

    def _room(self) -> int:
        """How many new jobs to take with a report (the scheduler fits them to free room)."""
        return 0 if self.draining.is_set() else MAX_JOBS_PER_POLL

    def _take(self, grant: dict[str, Any]) -> None:
        """Run a job the scheduler handed over (or give it back when draining)."""
        if self.draining.is_set():
            self._give_back(grant)
        else:
            self._start(grant)

    def _give_back(self, grant: dict[str, Any]) -> None:
        """A job that came in while draining goes back to the queue at once."""
        running = Running(grant["id"], grant["attempt"], grant["lease_id"])
        ended = Ended(
            None, None, "lost", f"worker {self.config.name} is draining", None, time.time()
        )
        task = asyncio.create_task(self.reporter.finished(running, ended))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self, grant: dict[str, Any]) -> None:
        running = Running(grant["id"], grant["attempt"], grant["lease_id"], grant["tenant"])
        self.running[running.job_id] = running
        self.watchdog.deadline(running.key, self._deadline(time.monotonic()))
        task = asyncio.create_task(
            self._run_attempt(running, JobSpec.model_validate(grant["spec"]))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_attempt(self, running: Running, spec: JobSpec) -> None:
        attempt = Attempt(running.job_id, running.attempt, self.config.name, spec, running.tenant)
        logs = LogShipper(self.api, running.job_id, running.attempt, running.lease_id)
        try:
            ended = await self.executor.run(
                attempt,
                logs,
                running.stop,
                on_start=lambda at: self.reporter.started(running, at),
            )
        except Exception as exc:  # the executor itself failed: say so, do not vanish
            log.exception("attempt %s/%s failed to run", running.job_id, running.attempt)
            ended = Ended(None, None, "error", f"worker error: {exc}", None, time.time())
        finally:
            await logs.close()
        if running.stop_reason and ended.kind == "lost":
            ended = dataclasses.replace(ended, reason=running.stop_reason)
        self.watchdog.drop(running.key)
        try:
            await self.reporter.finished(running, ended)
        finally:
            self.running.pop(running.job_id, None)

    async def _heartbeat_loop(self) -> None:
        while True:
            wait = 0.0 if self.draining.is_set() else self.heartbeat_seconds
            await self._heartbeat(wait, draining=self.draining.is_set())
            if wait == 0.0:
                await asyncio.sleep(self.heartbeat_seconds)

    async def _heartbeat(self, wait: float, draining: bool) -> None:
        """Renew the leases of held attempts; stop what the scheduler says to stop."""
        held = [
            {"job_id": r.job_id, "attempt": r.attempt, "lease_id": r.lease_id}
            for r in self.running.values()
        ]
        body = {"attempts": held, "wait": wait, "draining": draining}
        keys = {r.key for r in self.running.values()}
        sent = time.monotonic()
        answer = await self.api.call(
            f"/api/v1/workers/{self.config.name}/heartbeat", body, wait=wait
        )
        for running in self.running.values():  # renewed on arrival, which is after `sent`
            if running.key in keys:
                self.watchdog.deadline(running.key, self._deadline(sent))
        for job_id in answer["stop"]:
            self._lost(job_id)
        if answer["drain"]:
            self.drain(tell_scheduler=False)

    def _deadline(self, renewed: float) -> float:
        """When an attempt whose lease was renewed at `renewed` must be dead if it is not
        renewed again: a little before the scheduler can hand its job to another worker."""
        return renewed + self.lease_seconds - min(2.0, self.lease_seconds / 10)

    def _scheduler_down(self) -> None:
        """No scheduler listens (the connection was refused): nobody can hand these jobs to
        another worker, and a restarted scheduler gives them fresh leases; they run on."""
        now = time.monotonic()
        for running in self.running.values():
            self.watchdog.deadline(running.key, self._deadline(now))

    def _lost(self, job_id: int) -> None:
        """The scheduler says this attempt must stop (cancelled, or its lease is gone)."""
        running = self.running.get(job_id)
        if running is not None and not running.stop.is_set():
            log.info("stopping job %s: cancelled or lease lost", job_id)
            running.halt("cancelled, or the lease was lost")


def _containers(config: WorkerConfig, watchdog: Watchdog) -> Runner | None:
    """The container runner, unless this worker runs processes only (the Docker SDK is
    imported only when it may be used)."""
    if config.executor == "process":
        return None
    from o11n.worker.containers import ContainerConfig, ContainerRunner

    return ContainerRunner(
        ContainerConfig(
            allow_images=config.allow_images,
            pull_timeout=config.pull_timeout,
            kill_grace=config.kill_grace,
            reuse=config.container_reuse,
            default_memory=config.default_memory,
        ),
        watchdog=watchdog,
    )


async def run_worker(api: WorkerApi, config: WorkerConfig, stop: asyncio.Event) -> None:
    """Run an agent until `stop` is set (a signal) or the scheduler drains it."""
    agent = Agent(api, config)

    async def drain_on_stop() -> None:
        await stop.wait()
        agent.drain()

    watcher = asyncio.create_task(drain_on_stop())
    try:
        await agent.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await api.close()
