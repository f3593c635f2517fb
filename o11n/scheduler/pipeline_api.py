"""HTTP routes for pipelines: start one from its file, follow it, cancel it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect

from o11n.cas import tree as trees
from o11n.cas.store import CasStore
from o11n.core.reserved import refuse_reserved
from o11n.core.taskbook import compile_taskbook, stages
from o11n.errors import BadRequest, NotFound, O11nError
from o11n.pipeline.loader import load
from o11n.scheduler.app import Caller
from o11n.scheduler.auth import Principal
from o11n.scheduler.pipelines import PipelineRunner
from o11n.scheduler.schemas import (
    MAX_ID,
    ArtifactList,
    ArtifactOut,
    PipelineCreated,
    PipelineIn,
    PipelineList,
    PipelineOut,
)

router = APIRouter(tags=["pipelines"])
CLOSE_POLICY = 1008
WATCH_POLL_SECONDS = 1.0  # a watcher looks again at least this often
PipelineId = Annotated[int, Path(ge=1, le=MAX_ID, description="A pipeline id.")]


def runner_of(request: Request) -> PipelineRunner:
    runner: PipelineRunner = request.app.state.pipelines
    return runner


@router.post("/api/v1/pipelines", status_code=201)
async def create(body: PipelineIn, request: Request, who: Caller) -> PipelineCreated:
    """Start a pipeline; the scheduler runs it stage by stage (errors name line and column)."""
    pipeline = load(body.pipeline, body.file_name).with_variables(body.vars)
    book = compile_taskbook(pipeline, body.build_id)
    _refuse_reserved(book)
    runner = runner_of(request)
    if body.workspace is not None:
        await asyncio.to_thread(_check_tree, runner.cas, body.workspace)
    options = {
        "dry_run": body.dry_run,
        "fake_exit_codes": body.fake_exit_codes,
        "tenant": body.tenant,
        "workspace": body.workspace,
        "no_cache": body.no_cache,
    }
    pipeline_id = await runner.create(who, pipeline.name, book, options)
    return PipelineCreated(id=pipeline_id)


@router.get("/api/v1/pipelines")
async def list_pipelines(
    request: Request, who: Caller, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> PipelineList:
    """Pipelines, newest first."""
    runner = runner_of(request)
    tenant = who.scope()
    rows = await runner.sched.db.read(runner.store.find, tenant=tenant, limit=limit)
    return PipelineList(pipelines=[PipelineOut.model_validate(runner.view(r)) for r in rows])


@router.get("/api/v1/pipelines/{pipeline_id}")
async def get(pipeline_id: PipelineId, request: Request, who: Caller) -> PipelineOut:
    """One pipeline with every stage, substage, copy and job."""
    runner = runner_of(request)
    row = await runner.get_row(who, pipeline_id)
    return PipelineOut.model_validate(runner.view(row))


def _refuse_reserved(book: dict[str, Any]) -> None:
    """Every substage's env (the pipeline's variables, `vars` and matrix values included)."""
    for _, stage in stages(book):
        for sub in stage["substages"]:
            refuse_reserved(f"substage {sub['substage_name']}", sub["env"])


def _check_tree(cas: CasStore, digest: str) -> None:
    try:
        _read_tree(cas, digest)
    except NotFound:
        raise BadRequest(
            f"workspace {digest}: no such tree in the store; upload it first"
        ) from None


def _read_tree(cas: CasStore, digest: str) -> trees.Tree:
    return trees.from_bytes(cas.read(digest))


@router.get("/api/v1/pipelines/{pipeline_id}/artifacts")
async def artifacts(pipeline_id: PipelineId, request: Request, who: Caller) -> ArtifactList:
    """Every file the pipeline's substages stored as artifacts (cached ones included)."""
    runner = runner_of(request)
    view = runner.view(await runner.get_row(who, pipeline_id))
    listed = [
        (sub["name"], sub["artifacts"])
        for stage in view["stages"]
        for sub in stage["substages"]
        if sub.get("artifacts")
    ]
    out = []
    for name, digest in listed:
        tree = await asyncio.to_thread(_read_tree, runner.cas, digest)
        out += [
            ArtifactOut(substage=name, path=path, **entry.as_json())
            for path, entry in sorted(tree.items())
        ]
    return ArtifactList(artifacts=out)


@router.post("/api/v1/pipelines/{pipeline_id}/cancel")
async def cancel(pipeline_id: PipelineId, request: Request, who: Caller) -> PipelineOut:
    """Cancel a running pipeline and its jobs."""
    runner = runner_of(request)
    await runner.cancel(who, pipeline_id)
    row = await runner.get_row(who, pipeline_id)
    return PipelineOut.model_validate(runner.view(row))


@router.websocket("/api/v1/pipelines/{pipeline_id}/watch")
async def watch(ws: WebSocket, pipeline_id: PipelineId) -> None:
    """Stream a pipeline's record each time it changes, until it ends."""
    await ws.accept()
    runner: PipelineRunner = ws.app.state.pipelines
    header = ws.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() or ws.query_params.get("token")
    try:
        who = runner.sched.tokens.authenticate(token)
        await _stream(ws, runner, who, pipeline_id)
    except O11nError as exc:
        await ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
        await ws.close(CLOSE_POLICY)
    except WebSocketDisconnect:
        pass


async def _stream(ws: WebSocket, runner: PipelineRunner, who: Principal, pipeline_id: int) -> None:
    last: dict[str, object] = {}
    while True:
        view = runner.view(await runner.get_row(who, pipeline_id))
        if view != last:
            await ws.send_json({"type": "pipeline", **view})
            last = view
        if view["state"] != "running" or runner.sched.closing:
            await ws.send_json({"type": "end", "state": view["state"]})
            await ws.close()
            return
        async with runner.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.changed.wait(), WATCH_POLL_SECONDS)
