"""Executions: each Execute becomes an o11n job, followed to its end as an Operation.

One scheduler and one fairness policy serve CI jobs and build actions alike:
an action is queued, matched and leased like any job, and visible in `o11n
jobs list` (named `action <digest>`, labelled with it). A cached result is
served without running (unless `skip_cache_lookup`); identical cacheable
actions in flight share one job. An operation of a job is named
`operations/<job id>`, so it can be found again after a scheduler restart;
one answered at once (a cache hit, an action that cannot run) is kept in
memory only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from o11n.cas.eviction import Pin
from o11n.core.jobs import Event, Job
from o11n.core.states import JobState
from o11n.errors import MissingBlobs, NotFound, O11nError
from o11n.reapi import actions, digests
from o11n.reapi.blobs import Blobs
from o11n.reapi.cache import ActionCache
from o11n.reapi.protos import ops_pb2, re_pb2
from o11n.reapi.status import status, status_of
from o11n.scheduler.auth import ADMIN, Principal
from o11n.scheduler.service import Scheduler

log = logging.getLogger(__name__)
Stage = re_pb2.ExecutionStage
StageValue: TypeAlias = "re_pb2.ExecutionStage.Value.ValueType"
OPERATIONS = "operations/"
KEEP_ENDED = 10_000  # ended operations remembered for GetOperation and WaitExecution
ADMIN_PRINCIPAL = Principal(ADMIN)
FAILED_TO_RUN = {
    "error": grpc.StatusCode.FAILED_PRECONDITION,
    "lost": grpc.StatusCode.UNAVAILABLE,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
}


class Execution:
    """One operation: an action on its way through the queue, or already answered."""

    def __init__(self, name: str, instance: str, action: re_pb2.Digest, tenant: str) -> None:
        self.name, self.instance, self.action, self.tenant = name, instance, action, tenant
        self.stage = Stage.QUEUED
        self.response: re_pb2.ExecuteResponse | None = None
        self.command: re_pb2.Command | None = None
        self.cacheable = True
        self.pin: Pin | None = None  # the blobs the job needs, while it is in flight
        self._changed = asyncio.Event()

    @property
    def done(self) -> bool:
        return self.response is not None

    def operation(self) -> ops_pb2.Operation:
        """The operation as clients see it now."""
        op = ops_pb2.Operation(name=self.name, done=self.done)
        op.metadata.Pack(
            re_pb2.ExecuteOperationMetadata(stage=self.stage, action_digest=self.action)
        )
        if self.response is not None:
            op.response.Pack(self.response)
        return op

    def advance(self, stage: StageValue, response: re_pb2.ExecuteResponse | None = None) -> None:
        """Move on, and wake whoever is watching."""
        if self.done:
            return
        self.stage, self.response = stage, response
        self._changed.set()
        self._changed = asyncio.Event()

    async def updates(self) -> AsyncIterator[ops_pb2.Operation]:
        """The operation now and at each change, until it is done."""
        while True:
            changed = self._changed
            yield self.operation()
            if self.done:
                return
            await changed.wait()


class Executions:
    """Turns Execute calls into jobs and jobs' ends into ExecuteResponses."""

    def __init__(
        self,
        sched: Scheduler,
        blobs: Blobs,
        cache: ActionCache,
        *,
        unknown_properties: str = "require",
        default_timeout: float = 3600.0,
    ) -> None:
        self.sched, self.blobs, self.cache = sched, blobs, cache
        self.unknown_properties = unknown_properties
        self.default_timeout = default_timeout
        self._by_job: dict[int, Execution] = {}
        self._in_flight: dict[tuple[str, str], Execution] = {}
        self._submitting: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._ended: collections.OrderedDict[str, Execution] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        sched.hub.listen(self._on_event)

    async def start(self) -> None:
        """Take up the actions whose jobs are still queued or running (after a restart)."""
        for job in self.sched.db.read_now(self.sched.jobs.active):
            if actions.ACTION_LABEL in job.spec.labels:
                with contextlib.suppress(O11nError):
                    await self._adopt(job.id)

    # -- execute ---------------------------------------------------------------

    async def execute(self, who: Principal, request: re_pb2.ExecuteRequest) -> Execution:
        """An operation for the request: cached, merged with one in flight, or a new job.
        An action that cannot run is a done operation with the reason in its status."""
        instance = digests.check_instance(request.instance_name)
        digest = digests.checked(request.action_digest, "action digest")
        try:
            loaded = await actions.load(self.blobs, instance, digest)
            if not request.skip_cache_lookup:
                hit = await self.cache.get(instance, digest)
                if hit is not None:
                    return self._answered(instance, digest, who, cached=hit)
            if loaded.action.do_not_cache:
                return await self._submit(who, loaded)
            return await self._merge_or_submit(who, loaded)
        except O11nError as exc:
            return self._answered(instance, digest, who, error=exc)

    async def _merge_or_submit(self, who: Principal, loaded: actions.Loaded) -> Execution:
        """The execution of this action in flight, or a new one. While one call submits,
        the others with the same action wait for it (and submit themselves if it failed)."""
        key = (loaded.instance, loaded.digest.hash)
        while True:
            merged = self._in_flight.get(key)
            if merged is not None:
                return merged
            submitting = self._submitting.get(key)
            if submitting is None:
                break
            await asyncio.shield(submitting)
        done = asyncio.get_running_loop().create_future()
        self._submitting[key] = done
        try:
            return await self._submit(who, loaded)
        finally:
            del self._submitting[key]
            done.set_result(None)

    async def _submit(self, who: Principal, loaded: actions.Loaded) -> Execution:
        files, needed = await actions.input_tree(self.blobs, loaded)
        spec = actions.job_spec(
            loaded,
            files,
            unknown=self.unknown_properties,
            default_timeout=self.default_timeout,
        )
        pin = self.blobs.cas.pin(needed)  # kept from eviction until the result is recorded
        try:
            submitted = (await self.sched.submit(who, [spec]))[0]
        except BaseException:
            pin.release()
            raise
        execution = self._track(submitted.id, loaded, who.tenant_for(None))
        if execution.pin is None:
            execution.pin = pin
        else:
            pin.release()
        return execution

    def _track(self, job_id: int, loaded: actions.Loaded, tenant: str) -> Execution:
        execution = self._by_job.get(job_id)
        if execution is None:
            execution = Execution(f"{OPERATIONS}{job_id}", loaded.instance, loaded.digest, tenant)
            execution.command = loaded.command
            execution.cacheable = not loaded.action.do_not_cache
            self._by_job[job_id] = execution
            if execution.cacheable:
                self._in_flight[(loaded.instance, loaded.digest.hash)] = execution
        return execution

    def _answered(
        self,
        instance: str,
        digest: re_pb2.Digest,
        who: Principal,
        *,
        cached: re_pb2.ActionResult | None = None,
        error: O11nError | None = None,
    ) -> Execution:
        tenant = who.tenant or "default"
        execution = Execution(f"{OPERATIONS}x-{uuid.uuid4().hex}", instance, digest, tenant)
        if cached is not None:
            response = re_pb2.ExecuteResponse(result=cached, cached_result=True)
        else:
            assert error is not None
            response = re_pb2.ExecuteResponse(status=status_of(error))
        execution.advance(Stage.COMPLETED, response)
        self._remember(execution)
        return execution

    def _remember(self, execution: Execution) -> None:
        self._ended[execution.name] = execution
        while len(self._ended) > KEEP_ENDED:
            self._ended.popitem(last=False)

    # -- operations ------------------------------------------------------------

    async def find(self, who: Principal, name: str) -> Execution:
        """The operation of that name; NotFound when there is none the caller may see."""
        execution = self._ended.get(name)
        if execution is None and name.startswith(OPERATIONS):
            job_id = name[len(OPERATIONS) :]
            if job_id.isdigit() and len(job_id) < 19:
                execution = self._by_job.get(int(job_id)) or await self._adopt(int(job_id))
        if execution is None or not who.may_see(execution.tenant):
            raise NotFound(f"no operation {name[:200]!r}")
        return execution

    async def cancel(self, who: Principal, name: str) -> None:
        """Cancel the job of an operation (an answered one has nothing to cancel)."""
        execution = await self.find(who, name)
        job_id = name[len(OPERATIONS) :]
        if not execution.done and job_id.isdigit():
            with contextlib.suppress(O11nError):  # it ended meanwhile
                await self.sched.cancel(ADMIN_PRINCIPAL, int(job_id), "cancelled by the client")

    async def _adopt(self, job_id: int) -> Execution | None:
        """An Execution for a job of an action, rebuilt from the job (a restart forgot it)."""
        job = await self.sched.db.read(self.sched.jobs.get, job_id)
        if job is None or actions.ACTION_LABEL not in job.labels:
            return None
        instance = job.labels.get(actions.INSTANCE_LABEL, "")
        hash_, size = job.labels[actions.ACTION_LABEL].split("/")
        digest = re_pb2.Digest(hash=hash_, size_bytes=int(size))
        loaded = await actions.load(self.blobs, instance, digest)
        execution = self._track(job_id, loaded, job.tenant)
        if job.state.terminal:
            await self._finish(job_id)
        elif job.state is JobState.RUNNING:
            execution.advance(Stage.EXECUTING)
        return execution

    # -- job events ------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        execution = self._by_job.get(event.job_id)
        if execution is None:
            return
        state = JobState(event.state)
        if state.terminal:
            task = asyncio.get_running_loop().create_task(self._finish(event.job_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            execution.advance(Stage.EXECUTING if state is JobState.RUNNING else Stage.QUEUED)

    async def _finish(self, job_id: int) -> None:
        execution = self._by_job.get(job_id)
        if execution is None or execution.done:
            return
        try:
            job = await self.sched.db.read(self.sched.jobs.get, job_id)
            assert job is not None
            response = await self._response(execution, job)
            if _cacheable(execution, response):
                try:
                    await self.cache.put(execution.instance, execution.action, response.result)
                except MissingBlobs as exc:  # the result stands; it is just not cached
                    log.warning("action %s not cached: %s", execution.name, exc.message)
        except O11nError as exc:
            response = re_pb2.ExecuteResponse(status=status_of(exc))
        except Exception as exc:  # a bug must not leave the client waiting for ever
            log.exception("action %s", execution.name)
            response = re_pb2.ExecuteResponse(status=status(grpc.StatusCode.INTERNAL, str(exc)))
        self._by_job.pop(job_id, None)
        if execution.pin is not None:
            execution.pin.release()
            execution.pin = None
        if self._in_flight.get((execution.instance, execution.action.hash)) is execution:
            del self._in_flight[(execution.instance, execution.action.hash)]
        execution.advance(Stage.COMPLETED, response)
        self._remember(execution)

    async def _response(self, execution: Execution, job: Job) -> re_pb2.ExecuteResponse:
        attempt = job.attempts[-1] if job.attempts else None
        if job.state is JobState.CANCELLED:
            return re_pb2.ExecuteResponse(
                status=status(grpc.StatusCode.CANCELLED, job.reason or "cancelled")
            )
        ran = attempt is not None and attempt.outcome in ("succeeded", "failure", "timeout")
        if not ran or attempt is None or execution.command is None:
            kind = attempt.outcome if attempt is not None and attempt.outcome else "error"
            code = FAILED_TO_RUN.get(kind, grpc.StatusCode.INTERNAL)
            return re_pb2.ExecuteResponse(status=status(code, job.reason or kind))

        async def logs() -> tuple[bytes, bytes]:
            return await self._logs(job.id, attempt.number)

        result = await actions.result(self.blobs, execution.command, attempt, logs)
        result.execution_metadata.queued_timestamp.FromNanoseconds(int(job.created_at * 1e9))
        answer = re_pb2.ExecuteResponse(result=result)
        if attempt.outcome == "timeout":
            answer.status.CopyFrom(
                status(grpc.StatusCode.DEADLINE_EXCEEDED, attempt.reason or "timed out")
            )
        return answer

    async def _logs(self, job_id: int, attempt: int) -> tuple[bytes, bytes]:
        streams: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        after = (attempt, -1)
        while True:
            chunks = await self.sched.db.read(self.sched.logs.read, job_id, after=after)
            for chunk in chunks:
                if chunk.attempt == attempt:
                    streams.setdefault(chunk.stream, []).append(chunk.data)
            if len(chunks) < 1000 or chunks[-1].attempt != attempt:
                break
            after = (chunks[-1].attempt, chunks[-1].seq)
        return b"".join(streams["stdout"]), b"".join(streams["stderr"])


def _cacheable(execution: Execution, response: re_pb2.ExecuteResponse) -> bool:
    return (
        execution.cacheable
        and response.status.code == 0
        and response.HasField("result")
        and response.result.exit_code == 0
    )
