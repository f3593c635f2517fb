"""The pipeline runner: the scheduler itself advances pipelines, stage by stage.

Each substage copy runs as an ordinary job, labelled with its pipeline,
substage and copy, so the jobs are the truth: at start-up a running pipeline is
advanced again from the beginning, and each substage that already has a job
(found by its idempotency key) takes up that job where it stands, so a
pipeline goes on if its client goes away or the scheduler restarts. Job events
drive the run's state machine (`o11n.core.runs`); a dry run submits nothing
and feeds it fake exit codes.

A substage starts in its inputs: the workspace the run was given and the
artifacts of the substages that succeeded in earlier stages, merged into one
tree in the content-addressed store. Its cache key covers its command, env,
image, declared artifacts, the workspace files its `cache.inputs` name (the
whole workspace when it names none) and the artifacts it receives; a key that
matches an earlier success of the tenant marks the substage cached, with that
success's job and artifacts, and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from o11n.cas import tree as trees
from o11n.cas.store import CasStore
from o11n.core.jobs import Event, JobSpec, RetryPolicy
from o11n.core.runs import PipelineRun, Step, dry_run_exit_code
from o11n.core.states import JobState
from o11n.core.taskbook import stages
from o11n.errors import NotFound, O11nError
from o11n.scheduler.auth import Principal
from o11n.scheduler.service import Scheduler
from o11n.store.jobs import JobFilter
from o11n.store.pipelines import CacheHit, PipelineRow, PipelineStore

log = logging.getLogger(__name__)
ADMIN = Principal("admin")
PIPELINE, SUBSTAGE, COPY = "o11n.pipeline", "o11n.substage", "o11n.copy"
MAX_JOBS_PER_PIPELINE = 10_000


@dataclass
class ActiveRun:
    """A running pipeline in memory: its state machine and its jobs."""

    row: PipelineRow
    run: PipelineRun
    jobs: dict[tuple[str, int], int] = field(default_factory=dict)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    found: dict[tuple[str, int], tuple[int, JobState]] = field(default_factory=dict)
    inputs: dict[str, str | None] = field(default_factory=dict)  # substage -> input tree
    keys: dict[str, str] = field(default_factory=dict)  # substage -> cache key
    outputs: dict[str, str | None] = field(default_factory=dict)  # substage -> artifacts
    cached_from: dict[str, int] = field(default_factory=dict)  # substage -> earlier job

    @property
    def caching(self) -> bool:
        return not self.row.options.get("no_cache")


@dataclass(frozen=True)
class StageInputs:
    """What the substages of a stage start with: the workspace and earlier artifacts."""

    workspace: str | None
    files: trees.Tree
    artifacts: trees.Tree
    digest: str | None  # the merged tree, stored

    def key(self, sub: dict[str, Any]) -> str:
        """A substage's cache key: its command, env, image, declared artifacts, the
        workspace files its cache.inputs name (the whole workspace when none), and the
        artifacts it receives."""
        declared = sub.get("cache_inputs") or []
        parts = {
            "v": 1,
            "command": sub["command"],
            "env": sub["env"],
            "image": sub.get("image"),
            "artifacts": sub.get("artifacts", []),
            "inputs": (
                {p: e.as_json() for p, e in sorted(trees.select(self.files, declared).items())}
                if declared
                else self.workspace
            ),
            "received": {p: e.as_json() for p, e in sorted(self.artifacts.items())},
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class PipelineRunner:
    """Starts pipelines, follows their jobs, and moves them on."""

    def __init__(self, sched: Scheduler, cas: CasStore) -> None:
        self.sched = sched
        self.cas = cas
        self.store = PipelineStore(sched.db)
        self.active: dict[int, ActiveRun] = {}
        self._by_job: dict[int, tuple[int, str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Condition()  # notified whenever a pipeline moves on
        sched.hub.listen(self._on_event)
        cas.add_keeper(self._needed_blobs)

    def _needed_blobs(self) -> set[str]:
        """What the store's eviction must keep for pipelines: the trees (and their files)
        of the step cache's outputs and of the running pipelines' workspaces, inputs and
        artifacts. Called from the thread of a commit, so it reads copies."""
        roots: set[str | None] = set(self.sched.db.read_now(self.store.cached_outputs))
        for active in list(self.active.values()):
            roots.add(active.row.options.get("workspace"))
            roots.update(list(active.inputs.values()) + list(active.outputs.values()))
        kept: set[str] = set()
        for digest in roots:
            if digest is None:
                continue
            kept.add(digest)
            with contextlib.suppress(O11nError):
                tree = trees.from_bytes(self.cas.read(digest))
                kept.update(e.digest for e in tree.values() if e.digest)
        return kept

    async def start(self) -> None:
        """Pick up the pipelines that were running when the scheduler stopped."""
        for row in await self.sched.db.read(self.store.find, live=True, limit=10_000):
            active = self._activate(row)
            where = JobFilter(labels=((PIPELINE, str(row.id)),), limit=MAX_JOBS_PER_PIPELINE)
            for job in await self.sched.db.read(self.sched.jobs.find, where):
                key = (job.labels[SUBSTAGE], int(job.labels[COPY]))
                active.found[key] = (job.id, job.state)
            await self._pump(row.id)

    async def create(
        self, who: Principal, name: str, taskbook: dict[str, Any], options: dict[str, Any]
    ) -> int:
        """Start a pipeline; returns its id."""
        tenant = who.tenant_for(options.get("tenant"))
        if tenant not in self.sched.tenants:
            raise NotFound(f"no tenant {tenant!r}")
        row_id = await self.sched.db.write(
            self.store.insert, tenant, name, taskbook, options, self.sched.clock()
        )
        row = await self.sched.db.read(self.store.get, row_id)
        assert row is not None
        self._activate(row)
        await self._pump(row_id)
        return row_id

    async def cancel(self, who: Principal, pipeline_id: int) -> str:
        """Stop a running pipeline and its jobs."""
        row = await self.get_row(who, pipeline_id)
        active = self.active.get(pipeline_id)
        if active is None:
            return row.state
        active.run.cancel()
        for key, job_id in active.jobs.items():
            if active.run.substage(key[0]).copy_states[key[1]] is Step.RUNNING:
                await self._cancel_job(job_id)
        await self._finish(pipeline_id)
        return Step.CANCELLED.value

    async def get_row(self, who: Principal, pipeline_id: int) -> PipelineRow:
        """A pipeline the caller may see."""
        row = await self.sched.db.read(self.store.get, pipeline_id)
        if row is None or not who.may_see(row.tenant):
            raise NotFound(f"no pipeline {pipeline_id}")
        return row

    def view(self, row: PipelineRow) -> dict[str, Any]:
        """A pipeline's record: stages, substages, copies and their jobs."""
        active = self.active.get(row.id)
        steps = self._steps(active) if active else (row.summary or {})
        state = row.state  # "running" until its end, cancels and all, is recorded
        stage_views = [
            {
                "name": name,
                "state": steps.get("stages", {}).get(name, state),
                "substages": [
                    {
                        "name": s["substage_name"],
                        **steps.get("substages", {}).get(s["substage_name"], {}),
                    }
                    for s in stage["substages"]
                ],
            }
            for name, stage in stages(row.taskbook)
        ]
        return {
            "id": row.id,
            "name": row.name,
            "tenant": row.tenant,
            "state": state,
            "dry_run": bool(row.options.get("dry_run")),
            "stages": stage_views,
            "created_at": row.created_at,
            "finished_at": row.finished_at,
        }

    def _steps(self, active: ActiveRun) -> dict[str, Any]:
        """Where every stage and substage of a run stands (kept once it ends)."""
        subs = {}
        for stage in active.run.stages:
            for sub in stage.substages:
                cached_from = active.cached_from.get(sub.name)
                copies = [
                    {
                        "copy": i,
                        "state": s.value,
                        "job_id": cached_from
                        if i == 0 and cached_from
                        else active.jobs.get((sub.name, i)),
                    }
                    for i, s in enumerate(sub.copy_states)
                ]
                subs[sub.name] = {
                    "state": sub.state.value,
                    "copies": copies,
                    "artifacts": active.outputs.get(sub.name),
                    "cached_from": cached_from,
                    "cache_key": active.keys.get(sub.name),
                }
        return {"stages": {s.name: s.state.value for s in active.run.stages}, "substages": subs}

    # -- internals ----------------------------------------------------------------

    def _activate(self, row: PipelineRow) -> ActiveRun:
        active = ActiveRun(row, PipelineRun(row.taskbook))
        for _, stage in stages(row.taskbook):
            for sub in stage["substages"]:
                active.specs[sub["substage_name"]] = sub
        self.active[row.id] = active
        return active

    async def _pump(self, pipeline_id: int) -> None:
        """Start whatever the run says is ready; end the pipeline when it is done."""
        active = self.active.get(pipeline_id)
        while active is not None:
            ready = active.run.ready()
            if not ready:
                break
            await self._prepare(active, {name for name, _ in ready})
            ready = [(name, copy) for name, copy in ready if name not in active.cached_from]
            if active.row.options.get("dry_run"):
                fake = active.row.options.get("fake_exit_codes", {})
                for name, copy in ready:
                    active.run.finished(name, copy, dry_run_exit_code(name, fake) == 0)
                continue
            await self._submit(active, ready)
        if active is not None and active.run.state is not Step.RUNNING:
            await self._finish(pipeline_id)

    async def _prepare(self, active: ActiveRun, names: set[str]) -> None:
        """The input tree and cache key of substages about to start; those whose key
        matches an earlier success are marked cached. The substages of a stage share
        their inputs: the trees are read and merged once."""
        received = [active.outputs.get(s.name) for st in active.run.stages for s in st.substages]
        workspace = active.row.options.get("workspace")
        stage = await asyncio.to_thread(self._stage_inputs, workspace, [d for d in received if d])
        for name in sorted(names):
            key = stage.key(active.specs[name])
            active.inputs[name], active.keys[name] = stage.digest, key
            if not active.caching or name in active.cached_from:
                continue
            hit = await self.sched.db.read(self.store.cached, active.row.tenant, key)
            if hit is not None and not any(k[0] == name for k in active.found):
                active.cached_from[name] = hit.job_id
                active.outputs[name] = hit.outputs
                active.run.cached(name)

    def _stage_inputs(self, workspace: str | None, received: list[str]) -> StageInputs:
        """The workspace and the artifacts received, as one stored tree (in a thread)."""
        ws = trees.from_bytes(self.cas.read(workspace)) if workspace else {}
        artifacts = trees.merge(trees.from_bytes(self.cas.read(d)) for d in received)
        digest = (
            self.cas.put(trees.to_bytes(trees.merge([ws, artifacts]))) if artifacts else workspace
        )
        return StageInputs(workspace, ws, artifacts, digest)

    async def _submit(self, active: ActiveRun, ready: list[tuple[str, int]]) -> None:
        """Submit jobs for the ready copies; a copy that has a job already (found at start-up)
        takes that job up where it stands."""
        new = [key for key in ready if key not in active.found]
        specs = [self._job_spec(active, name, copy) for name, copy in new]
        try:
            done = await self.sched.submit(ADMIN, specs) if specs else []
        except O11nError as exc:
            log.warning("pipeline %s: cannot submit: %s", active.row.id, exc.message)
            for name, copy in new:
                active.run.finished(name, copy, ok=False)
            done, ready = [], [key for key in ready if key in active.found]
        ids = {key: submitted.id for key, submitted in zip(new, done, strict=True)}
        ended = []
        for key in ready:
            job_id, state = active.found[key] if key in active.found else (ids[key], None)
            active.jobs[key] = job_id
            self._by_job[job_id] = (active.row.id, *key)
            if state is not None and state.terminal:
                ended.append((job_id, state))
        for job_id, state in sorted(ended):  # replayed in the order they ran
            await self._ended(job_id, state)

    def _job_spec(self, active: ActiveRun, name: str, copy: int) -> JobSpec:
        sub = active.specs[name]
        return JobSpec(
            command=sub["command"],
            name=name[:200],
            tenant=active.row.tenant,
            env=sub["env"],
            tags=sub["tags"],
            resources=sub["resources"],
            timeout=sub["timeout"],
            retry=RetryPolicy.model_validate(sub["retry"]),
            labels={PIPELINE: str(active.row.id), SUBSTAGE: name, COPY: str(copy)},
            idempotency_key=f"pipeline-{active.row.id}-{name}-{copy}"[:128],
            image=sub.get("image"),
            network=sub.get("network", False),
            files=active.inputs.get(name),
            outputs=sub.get("artifacts", []),
        )

    def _on_event(self, event: Event) -> None:
        if event.job_id in self._by_job and JobState(event.state).terminal:
            task = asyncio.get_running_loop().create_task(
                self._ended_and_pump(event.job_id, JobState(event.state))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ended_and_pump(self, job_id: int, state: JobState) -> None:
        pipeline_id = await self._ended(job_id, state)
        if pipeline_id is not None:
            await self._pump(pipeline_id)
            await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _ended(self, job_id: int, state: JobState) -> int | None:
        where = self._by_job.pop(job_id, None)
        if where is None or where[0] not in self.active:
            return None
        pipeline_id, name, copy = where
        active = self.active[pipeline_id]
        sub = active.run.substage(name)
        if sub.copy_states[copy] is not Step.RUNNING:
            return pipeline_id  # a copy we cancelled, or a run already ended
        won = state is JobState.SUCCEEDED and not sub.state.done
        if won:
            await self._succeeded(active, name, job_id)
        for other in active.run.finished(name, copy, ok=state is JobState.SUCCEEDED):
            await self._cancel_job(active.jobs[(name, other)])
        return pipeline_id

    async def _succeeded(self, active: ActiveRun, name: str, job_id: int) -> None:
        """Keep the winning job's artifacts, and remember its success under its cache key."""
        job = await self.sched.db.read(self.sched.jobs.get, job_id)
        outputs = job.attempts[-1].outputs if job is not None and job.attempts else None
        active.outputs[name] = outputs
        key = active.keys.get(name)
        if key is not None:
            hit = CacheHit(job_id, active.row.id, name, outputs)
            await self.sched.db.write(
                self.store.remember, active.row.tenant, key, hit, self.sched.clock()
            )

    async def _cancel_job(self, job_id: int) -> None:
        with contextlib.suppress(O11nError):  # it ended meanwhile
            await self.sched.cancel(ADMIN, job_id, reason="cancelled by its pipeline")

    async def _finish(self, pipeline_id: int) -> None:
        active = self.active.pop(pipeline_id, None)
        if active is None:
            return
        for job_id in [j for j, w in self._by_job.items() if w[0] == pipeline_id]:
            self._by_job.pop(job_id)
        await self.sched.db.write(
            self.store.finish,
            pipeline_id,
            active.run.state.value,
            self._steps(active),
            self.sched.clock(),
        )
        await self._notify()
