"""WebSocket streams: one job's events and log, or every event of a tenant.

A watcher first gets what the store already holds after its `since` event id,
then the live stream; it subscribes before reading the store, so nothing falls
in the gap, and drops what it already sent. Reconnect with `since` set to the
last event id seen to resume.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from o11n.core.states import TERMINAL, JobState
from o11n.errors import O11nError
from o11n.scheduler.auth import Principal
from o11n.scheduler.hub import Subscription
from o11n.scheduler.schemas import MAX_ATTEMPT, EventIdQuery, JobIdPath
from o11n.scheduler.service import Scheduler, log_message

router = APIRouter()
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


async def _authenticate(ws: WebSocket) -> Principal | None:
    sched: Scheduler = ws.app.state.scheduler
    header = ws.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() or ws.query_params.get("token")
    try:
        return sched.tokens.authenticate(token)
    except O11nError as exc:
        await ws.close(CLOSE_POLICY, exc.message)
        return None


@router.websocket("/api/v1/jobs/{job_id}/watch")
async def watch_job(
    ws: WebSocket,
    job_id: JobIdPath,
    since: EventIdQuery = 0,
    logs: bool = True,
    log_attempt: Annotated[int, Query(ge=0, le=MAX_ATTEMPT)] = 0,
    log_seq: Annotated[int, Query(ge=-1, le=2**31 - 1)] = -1,
) -> None:
    """Stream a job's events (and log chunks); closes after its final event."""
    await ws.accept()
    who = await _authenticate(ws)
    if who is None:
        return
    sched: Scheduler = ws.app.state.scheduler
    sub = sched.hub.subscribe(job_id=job_id)
    try:
        log_after = (log_attempt, log_seq) if logs else None
        await _stream_job(ws, sched, who, sub, job_id, since, log_after)
    except O11nError as exc:
        await ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
        await ws.close(CLOSE_POLICY)
    except WebSocketDisconnect:
        pass
    finally:
        sched.hub.unsubscribe(sub)


async def _stream_job(
    ws: WebSocket,
    sched: Scheduler,
    who: Principal,
    sub: Subscription,
    job_id: int,
    since: int,
    log_after: tuple[int, int] | None,
) -> None:
    logs = log_after is not None
    last_event, finished = await _replay_events(ws, sched, who, job_id, since)
    log_pos = await _replay_logs(ws, sched, who, job_id, log_after) if log_after else (0, -1)
    if not finished and (await sched.head(who, job_id))[1] in TERMINAL:
        # It ended before `since`, or while we replayed: send what is left and stop.
        last_event, _ = await _replay_events(ws, sched, who, job_id, last_event)
        while not sub.queue.empty():
            message = sub.queue.get_nowait()
            if message["type"] == "log" and logs and (message["attempt"], message["seq"]) > log_pos:
                await ws.send_json(message)
        finished = True
    while not finished:
        message = await sub.queue.get()
        if sub.overflowed or message["type"] == "closing":
            await ws.close(
                CLOSE_TRY_AGAIN,
                "reconnect with since: "
                + ("the server is restarting" if message["type"] == "closing" else "fell behind"),
            )
            return
        if message["type"] == "event":
            if message["id"] <= last_event:
                continue
            last_event, finished = message["id"], JobState(message["state"]) in TERMINAL
        elif not logs or (message["attempt"], message["seq"]) <= log_pos:
            continue
        await ws.send_json(message)
    await ws.send_json({"type": "end", "last_event": last_event})
    await ws.close()


async def _replay_events(
    ws: WebSocket, sched: Scheduler, who: Principal, job_id: int, after: int
) -> tuple[int, bool]:
    last, finished = after, False
    for event in await sched.events(who, job_id, after):
        await ws.send_json({"type": "event", **event.model_dump()})
        last, finished = event.id, JobState(event.state) in TERMINAL
    return last, finished


async def _replay_logs(
    ws: WebSocket, sched: Scheduler, who: Principal, job_id: int, position: tuple[int, int]
) -> tuple[int, int]:
    while True:
        chunks = await sched.read_logs(who, job_id, position)
        for chunk in chunks:
            await ws.send_json(log_message(chunk))
            position = (chunk.attempt, chunk.seq)
        if len(chunks) < 1000:
            return position


@router.websocket("/api/v1/watch")
async def watch_all(ws: WebSocket, since: EventIdQuery = 0, tenant: str | None = None) -> None:
    """Stream every event of the caller's tenant (an admin: all, or `tenant`)."""
    await ws.accept()
    who = await _authenticate(ws)
    if who is None:
        return
    sched: Scheduler = ws.app.state.scheduler
    try:
        own = who.scope()  # a worker token watches no tenant
    except O11nError as exc:
        await ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
        await ws.close(CLOSE_POLICY)
        return
    scope = own if own is not None else tenant
    sub = sched.hub.subscribe(tenant=scope)
    try:
        last = since
        if since:
            for event in await sched.db.read(sched.jobs.events, tenant=scope, after=since):
                await ws.send_json({"type": "event", **event.model_dump()})
                last = event.id
        await _stream_tenant(ws, sub, last)
    except WebSocketDisconnect:
        pass
    finally:
        sched.hub.unsubscribe(sub)


async def _stream_tenant(ws: WebSocket, sub: Subscription, last: int) -> None:
    while True:
        message: dict[str, Any] = await sub.queue.get()
        if sub.overflowed or message["type"] == "closing":
            with contextlib.suppress(RuntimeError):
                await ws.close(CLOSE_TRY_AGAIN, "reconnect with since")
            return
        if message["type"] != "event" or message["id"] <= last:
            continue
        await ws.send_json(message)
