"""The FastAPI application: error mapping, authentication, and the routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from o11n import __version__
from o11n.cas.store import CasStore
from o11n.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    O11nError,
    Unauthorized,
    Unavailable,
)
from o11n.scheduler.auth import Principal
from o11n.scheduler.schemas import ErrorBody
from o11n.scheduler.service import Scheduler

log = logging.getLogger(__name__)

STATUS: dict[type[O11nError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "Bad input"),
        (401, "Missing or unknown token"),
        (403, "Not allowed for this token"),
        (404, "No such object"),
        (409, "Conflicts with the object's state"),
        (422, "Invalid request body or parameters"),
    ]
}

bearer = HTTPBearer(auto_error=False, description="An admin, tenant or worker token.")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one shape of every error answer."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def status_of(exc: O11nError) -> int:
    """The HTTP status for an o11n error, by its nearest class in STATUS."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def scheduler_of(request: Request) -> Scheduler:
    """The scheduler serving this request."""
    sched: Scheduler = request.app.state.scheduler
    return sched


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Who is calling, from the bearer token."""
    token = credentials.credentials if credentials else None
    sched: Scheduler = request.app.state.scheduler
    return sched.tokens.authenticate(token)


Caller = Annotated[Principal, Depends(principal)]
Sched = Annotated[Scheduler, Depends(scheduler_of)]


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def create_app(scheduler: Scheduler, cas: CasStore, *, manage_lifecycle: bool = True) -> FastAPI:
    """The HTTP/WebSocket application around a scheduler and its content-addressed store."""
    from o11n.scheduler import (
        agent_api,
        api,
        autoscale_api,
        cas_api,
        cost_api,
        pipeline_api,
        service_api,
        ui_api,
        watch,
        worker_api,
    )
    from o11n.scheduler.pipelines import PipelineRunner
    from o11n.scheduler.services import ServiceManager
    from o11n.ui import routes as ui_routes

    runner = PipelineRunner(scheduler, cas)
    services = ServiceManager(scheduler)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await scheduler.start()
            await runner.start()
            await services.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await services.stop()
                await scheduler.stop()

    app = FastAPI(
        title="o11n",
        version=__version__,
        description="CI and build orchestration: jobs, workers, leases, events.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.scheduler = scheduler
    app.state.pipelines = runner
    app.state.cas = cas
    app.state.services = services
    app.state.autoscale = None  # an ElasticPool when the scheduler runs with --autoscale

    @app.exception_handler(O11nError)
    async def _o11n_error(_request: Request, exc: O11nError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return error_response(500, "internal", "internal error; see the scheduler's log")

    app.include_router(worker_api.router)  # first: workers call most, and routes match in order
    app.include_router(api.router)
    app.include_router(pipeline_api.router)
    app.include_router(watch.router)
    app.include_router(cas_api.router)
    app.include_router(agent_api.router)
    app.include_router(service_api.router)
    app.include_router(cost_api.router)
    app.include_router(autoscale_api.router)
    app.include_router(ui_api.router)
    app.include_router(ui_routes.router)
    return app
