"""`o11n worker`: run a worker agent on this machine."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
import tempfile
from pathlib import Path

import typer

from o11n.cli.output import pairs
from o11n.client import DEFAULT_SERVER, default_token
from o11n.core.ports import parse_range
from o11n.core.units import parse_size
from o11n.errors import BadRequest
from o11n.worker import host
from o11n.worker.agent import WorkerConfig, run_worker
from o11n.worker.api import WorkerApi


def worker(
    ctx: typer.Context,
    server: str = typer.Option(None, help="Scheduler URL [default: $O11N_SERVER]."),
    token: str = typer.Option(None, help="Worker or admin token [default: $O11N_TOKEN]."),
    name: str = typer.Option(None, help="Worker name [default: the host name]."),
    tag: list[str] = typer.Option(
        None, "--tag", "-t", help="Extra tag KEY=VALUE (arch and os are detected)."
    ),
    cpus: float = typer.Option(None, min=0.01, help="Cores to offer [default: all]."),
    memory: str = typer.Option(None, help="Memory to offer, e.g. 8G [default: all]."),
    gpus: int = typer.Option(0, min=0, help="GPUs to offer."),
    address: str = typer.Option(
        None, help="Where its service tasks listen: the `ip` attribute [default: the host's]."
    ),
    ports: str = typer.Option("31000-32000", help="Host ports for service tasks."),
    executor: str = typer.Option(
        "auto",
        help="auto (a job with an image runs in a container), process, or container.",
    ),
    allow_image: list[str] = typer.Option(
        None, "--allow-image", help="Images jobs may use, as glob patterns [default: any]."
    ),
    pull_timeout: float = typer.Option(300.0, min=1, help="Seconds an image pull may take."),
    container_reuse: str = typer.Option(
        "on", help="on: warm containers, one exec per job; off: one container per job."
    ),
    default_memory: str = typer.Option(
        "2G",
        help="Memory limit of container jobs that ask for none (a job's own request wins).",
    ),
    workdir: Path = typer.Option(None, help="Where attempts run [default: a temp folder]."),
    keep_workdirs: bool = typer.Option(False, help="Keep each attempt's folder afterwards."),
    cache_cap: str = typer.Option(
        "10G",
        help="Size cap of the local cache of input blobs (WORKDIR/.cas); the least "
        "recently used go first. 0: no cap.",
    ),
    kill_grace: float = typer.Option(10.0, min=0, help="Seconds between SIGTERM and SIGKILL."),
    drain_timeout: float = typer.Option(
        600.0, min=0, help="On SIGTERM, seconds to let running jobs finish before stopping them."
    ),
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
) -> None:
    """Run a worker: register, pull jobs, run them (needs no open port)."""
    obj = ctx.obj or {}
    worker_name = name or host.hostname()
    try:
        offered = parse_size(memory) if memory else host.memory_bytes()
    except BadRequest as exc:
        raise typer.BadParameter(exc.message, param_hint="--memory") from None
    try:
        cache_bytes = parse_size(cache_cap)
    except BadRequest as exc:
        raise typer.BadParameter(exc.message, param_hint="--cache-cap") from None
    try:
        memory_limit = parse_size(default_memory)
    except BadRequest as exc:
        raise typer.BadParameter(exc.message, param_hint="--default-memory") from None
    if memory_limit < 4 * 2**20:
        raise typer.BadParameter("at least 4M", param_hint="--default-memory")
    if container_reuse not in ("on", "off"):
        raise typer.BadParameter("on or off", param_hint="--container-reuse")
    if executor not in ("auto", "process", "container"):
        raise typer.BadParameter("auto, process or container", param_hint="--executor")
    try:
        ip = str(ipaddress.ip_address(address)) if address else host.address()
        parse_range(ports)
    except ValueError:
        raise typer.BadParameter(
            f"{address!r} is not an IP address", param_hint="--address"
        ) from None
    except BadRequest as exc:
        raise typer.BadParameter(exc.message, param_hint="--ports") from None
    config = WorkerConfig(
        name=worker_name,
        tags={**host.default_tags(), **pairs(tag, "tag")},
        cpus=cpus or float(host.cores()),
        memory=offered,
        gpus=gpus,
        workdir=(workdir or Path(tempfile.gettempdir()) / f"o11n-{worker_name}").resolve(),
        address=ip,
        ports=ports,
        executor=executor,
        allow_images=tuple(allow_image or ["*"]),
        pull_timeout=pull_timeout,
        container_reuse=container_reuse == "on",
        keep_workdirs=keep_workdirs,
        kill_grace=kill_grace,
        drain_timeout=drain_timeout,
        cache_cap=cache_bytes or None,
        default_memory=memory_limit,
    )
    url = server or obj.get("server") or DEFAULT_SERVER
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s worker %(message)s")
    api_token = token or obj.get("token") or default_token()
    # The standard event loop, not uvloop: its subprocesses start with vfork, about
    # 3x cheaper than libuv's fork for every job the worker runs.
    asyncio.run(_main(WorkerApi(url, api_token), config))


async def _main(api: WorkerApi, config: WorkerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if sys.version_info < (3, 12):  # 3.12 does this by itself; 3.11 starts a thread per child
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)
    signals = {"count": 0}

    def on_signal() -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            raise SystemExit(1)  # a second signal: stop now
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await run_worker(api, config, stop)
