"""`o11n worker`: run a worker agent on this machine."""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import typer

from o11n.cli.output import pairs
from o11n.client import DEFAULT_SERVER, default_token
from o11n.core.ports import parse_range
from o11n.core.units import parse_size
from o11n.errors import BadRequest
from o11n.worker import host
from o11n.worker.agent import WorkerConfig, run_worker
from o11n.worker.api import WorkerApi
from o11n.worker.sandbox import DEFAULT_UIDS, Sandbox, parse_uids

PR_SET_DUMPABLE = 4


def worker(
    ctx: typer.Context,
    server: str = typer.Option(None, help="Scheduler URL [default: $O11N_SERVER]."),
    token: str = typer.Option(
        None,
        help="Worker token [default: $O11N_TOKEN]; --token-file keeps it out of argv and "
        "the environment (given here, the worker starts itself again without it).",
    ),
    token_file: Path | None = typer.Option(
        None, help="Read the worker token from this file (it is kept in memory only)."
    ),
    token_fd: int | None = typer.Option(None, hidden=True, help="Read the token from this fd."),
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
    sandbox: str = typer.Option(
        "on",
        help="on: each process job as a uid of its own in its own namespaces (bubblewrap); "
        "off: as the worker itself, for trusted single-tenant machines only.",
    ),
    sandbox_uids: str = typer.Option(
        f"{DEFAULT_UIDS.start}-{DEFAULT_UIDS.stop - 1}",
        help="The uids sandboxed jobs run as, one per running job.",
    ),
    kill_grace: float = typer.Option(10.0, min=0, help="Seconds between SIGTERM and SIGKILL."),
    drain_timeout: float = typer.Option(
        600.0, min=0, help="On SIGTERM, seconds to let running jobs finish before stopping them."
    ),
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
) -> None:
    """Run a worker: register, pull jobs, run them (needs no open port)."""
    obj = ctx.obj or {}
    exposed = token or obj.get("token") or os.environ.get("O11N_TOKEN")
    if token_fd is None and exposed:  # in /proc/PID/cmdline or environ: start again without
        _start_again_without(_read_token(token_file, None) or exposed)
    api_token = _read_token(token_file, token_fd) or default_token()
    worker_name = name or host.hostname()
    offered = _size(memory, "--memory") if memory else host.memory_bytes()
    cache_bytes = _size(cache_cap, "--cache-cap")
    memory_limit = _size(default_memory, "--default-memory")
    if memory_limit < 4 * 2**20:
        raise typer.BadParameter("at least 4M", param_hint="--default-memory")
    _one_of(container_reuse, ("on", "off"), "--container-reuse")
    _one_of(executor, ("auto", "process", "container"), "--executor")
    _one_of(sandbox, ("on", "off"), "--sandbox")
    try:
        uids = parse_uids(sandbox_uids)
    except BadRequest as exc:
        raise typer.BadParameter(exc.message, param_hint="--sandbox-uids") from None
    work = (workdir or Path(tempfile.gettempdir()) / f"o11n-{worker_name}").resolve()
    if sandbox == "on":
        missing = Sandbox(work).missing()
        if missing:
            raise typer.BadParameter(f"{missing}; or --sandbox off", param_hint="--sandbox")
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
        tags={**host.default_tags(), "sandbox": sandbox, **pairs(tag, "tag")},
        cpus=cpus or float(host.cores()),
        memory=offered,
        gpus=gpus,
        workdir=work,
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
        sandbox=sandbox == "on",
        sandbox_uids=uids,
        default_memory=memory_limit,
    )
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o700)  # attempts' folders and the blob cache: no other uid may enter
    url = server or obj.get("server") or DEFAULT_SERVER
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s worker %(message)s")
    _libc.prctl(PR_SET_DUMPABLE, 0)  # no process of another uid may read its memory
    # The standard event loop, not uvloop: its subprocesses start with vfork, about
    # 3x cheaper than libuv's fork for every job the worker runs.
    asyncio.run(_main(WorkerApi(url, api_token), config))


_libc = ctypes.CDLL(None, use_errno=True)


def _size(text: str, option: str) -> int:
    try:
        return parse_size(text)
    except BadRequest as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def _one_of(value: str, allowed: tuple[str, ...], option: str) -> None:
    if value not in allowed:
        raise typer.BadParameter(" or ".join(allowed), param_hint=option)


def _start_again_without(token: str) -> NoReturn:
    """Exec this worker again with the token on an inherited pipe instead of in argv or
    the environment (both stay readable in /proc for the life of the process)."""
    read_end, write_end = os.pipe()
    os.write(write_end, token.encode())
    os.close(write_end)
    os.set_inheritable(read_end, True)
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--token":
            skip = True
        elif not arg.startswith("--token="):
            args.append(arg)
    env = {k: v for k, v in os.environ.items() if k != "O11N_TOKEN"}
    argv = [sys.executable, "-m", "o11n", *args, "--token-fd", str(read_end)]
    os.execve(sys.executable, argv, env)


def _read_token(path: Path | None, fd: int | None) -> str | None:
    """The token from --token-file or the pipe of `_start_again_without`."""
    if fd is not None:
        with os.fdopen(fd, "rb") as pipe:
            return pipe.read().decode().strip() or None
    if path is None:
        return None
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--token-file"
        ) from None


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
