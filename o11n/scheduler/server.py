"""Running the scheduler: open the store, build the app, serve it with uvicorn."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import uvloop
from fastapi import FastAPI

from o11n.autoscale.catalog import load_catalog
from o11n.autoscale.local import LocalProvider
from o11n.autoscale.pool import ElasticPool
from o11n.autoscale.providers import Provider
from o11n.cas.store import CasStore
from o11n.reapi.server import ReapiConfig, ReapiServer
from o11n.scheduler.app import create_app
from o11n.scheduler.auth import admin_token
from o11n.scheduler.service import Scheduler
from o11n.store.database import Database, engine_url

DEFAULT_PORT = 8787


@dataclass(frozen=True)
class ServerConfig:
    """How to run a scheduler."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str | None = None
    lease_seconds: float = 30.0
    log_level: str = "warning"
    sqlite_sync: str = "full"
    reapi: ReapiConfig | None = None
    cas_cap_bytes: int | None = None  # the content-addressed store's size cap (LRU eviction)
    autoscale: Path | None = None  # an instance catalog: workers on demand
    autoscale_provider: str = "local"  # or "kubernetes" (worker Pods, in-cluster config)
    kube_namespace: str = "o11n"
    kube_image: str = "o11n:latest"
    kube_server_url: str = "http://o11n-scheduler:8787"  # the scheduler, as Pods reach it


def data_dir_default() -> Path:
    """$O11N_DATA, or ./.o11n."""
    return Path(os.environ.get("O11N_DATA", ".o11n"))


Ready = Callable[[str, str, int | None], None]  # URL, admin token, REAPI port


def lock_down(data_dir: Path) -> None:
    """The data folder (the database, the store, the admin token) is this user's alone:
    no job a worker runs as another uid can read it. What is made later is too."""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)


def serve(config: ServerConfig, on_ready: Ready | None = None) -> None:
    """Run the scheduler (and the Remote Execution API, when configured) until SIGINT or
    SIGTERM."""
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    lock_down(config.data_dir)
    token = admin_token(config.data_dir)
    db = Database(engine_url(config.db, config.data_dir), sqlite_sync=config.sqlite_sync)
    scheduler = Scheduler(db, token, lease_seconds=config.lease_seconds)
    cas = CasStore(config.data_dir / "cas", cap_bytes=config.cas_cap_bytes)
    app = create_app(scheduler, cas)
    reapi = ReapiServer(scheduler, cas, config.reapi) if config.reapi else None
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            ws="websockets-sansio",
            log_level=config.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(server, app, scheduler, reapi, config, token, on_ready))
    finally:
        db.close()


async def _serve(
    server: uvicorn.Server,
    app: FastAPI,
    scheduler: Scheduler,
    reapi: ReapiServer | None,
    config: ServerConfig,
    token: str,
    on_ready: Ready | None,
) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    reapi_port = None
    if server.started and reapi is not None:
        try:
            reapi_port = await reapi.start()
        except Exception:
            server.should_exit = True
            await task
            raise
    url = f"http://{config.host}:{server_port(server, config)}"
    pool = None
    if server.started and config.autoscale is not None:
        pool = await _start_pool(app, scheduler, config, url)
    if server.started and on_ready is not None:
        on_ready(url, token, reapi_port)
    while not server.should_exit and not task.done():
        await asyncio.sleep(0.05)
    if pool is not None:
        await pool.stop()
    if reapi is not None and reapi_port is not None:
        await reapi.stop()
    scheduler.close_polls()  # long-polls would hold the graceful shutdown up
    await task


def server_port(server: uvicorn.Server, config: ServerConfig) -> int:
    """The port actually bound (for --port 0)."""
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return config.port


async def _start_pool(
    app: FastAPI, scheduler: Scheduler, config: ServerConfig, url: str
) -> ElasticPool:
    """The autoscaler: `o11n worker`s started on this machine (local), or worker Pods."""
    assert config.autoscale is not None
    catalog = load_catalog(config.autoscale)
    provider: Provider
    if config.autoscale_provider == "kubernetes":
        from o11n.autoscale.kubernetes import KubernetesProvider, KubernetesSettings

        settings = KubernetesSettings(
            config.kube_server_url, namespace=config.kube_namespace, image=config.kube_image
        )
        provider = KubernetesProvider(settings, clock=scheduler.clock)
    else:
        token = await scheduler.new_worker_token()
        provider = LocalProvider(url, token, config.data_dir / "autoscale", scheduler.clock)
    pool = ElasticPool(scheduler, catalog, provider)
    app.state.autoscale = pool
    await pool.start()
    return pool
