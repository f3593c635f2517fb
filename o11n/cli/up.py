"""`o11n up`: a scheduler on the embedded SQLite store plus local workers, in one command.

`up` supervises child processes: one `o11n server` and N `o11n worker`s, each in
its own session (so Ctrl-C reaches `up` alone, which stops them in order:
workers first, so their last results land, then the scheduler) and set to die
with `up` should it be killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from o11n.scheduler.auth import write_token
from o11n.scheduler.server import DEFAULT_PORT, data_dir_default, lock_down
from o11n.worker import host

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """In a child between fork and exec: be killed when `up` dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def up(
    workers: int = typer.Option(None, min=0, help="Local workers [default: one per core]."),
    port: int = typer.Option(DEFAULT_PORT, help="Port of the scheduler."),
    host_: str = typer.Option("127.0.0.1", "--host", help="Address of the scheduler."),
    data: Path = typer.Option(None, envvar="O11N_DATA", help="Data folder [default: ./.o11n]."),
    lease_seconds: float = typer.Option(30.0, min=0.2, help="Lease length of an attempt."),
    drain_timeout: float = typer.Option(
        10.0, min=0, help="On Ctrl-C, seconds running jobs get to finish."
    ),
    reapi_port: int = typer.Option(
        None, min=1, help="Also serve the Bazel Remote Execution API (gRPC) on this port."
    ),
    autoscale: Path = typer.Option(
        None,
        help="An instance catalog (YAML): workers are started on demand and stopped when "
        "idle (then --workers defaults to 0).",
    ),
) -> None:
    """Run a scheduler and local workers; Ctrl-C stops them all."""
    data_dir = (data or data_dir_default()).absolute()
    count = (0 if autoscale else host.cores()) if workers is None else workers
    if autoscale is not None:
        from o11n.autoscale.catalog import load_catalog

        load_catalog(autoscale)  # a bad catalog is a usage error before anything starts
    lock_down(data_dir)
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    url = f"http://{host_}:{port}"
    stopping: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    server = spawn_o11n(
        [
            "server",
            "--host",
            host_,
            "--port",
            str(port),
            "--data",
            str(data_dir),
            "--lease-seconds",
            str(lease_seconds),
            *(["--reapi-port", str(reapi_port)] if reapi_port else []),
            *(["--autoscale", str(autoscale.absolute())] if autoscale else []),
        ],
        logs / "server.log",
        {},
    )
    children: list[subprocess.Popen[bytes]] = []
    try:
        token = _wait_ready(server, url, data_dir, logs / "server.log", stopping)
        children = _start_workers(count, url, token, data_dir, drain_timeout)
        reapi = f"grpc://{host_}:{reapi_port}" if reapi_port else None
        _announce(url, token, data_dir, count, reapi)
        if autoscale is not None:
            print(f"autoscaling from {autoscale}: workers start on demand (o11n autoscale events)")
        while not stopping and server.poll() is None:
            time.sleep(0.2)
        if server.poll() is not None and not stopping:
            print(f"o11n: the scheduler stopped; see {logs / 'server.log'}", file=sys.stderr)
    finally:
        _stop(children, drain_timeout + 10)
        _stop([server], 15)
    print("o11n: stopped", file=sys.stderr)


def spawn_o11n(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("O11N_TOKEN", "O11N_SERVER")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "o11n", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, **env},
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def _wait_ready(
    server: subprocess.Popen[bytes], url: str, data_dir: Path, log: Path, stopping: list[int]
) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopping:
        if server.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise typer.BadParameter(f"the scheduler did not start: {tail[0]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return (
                    os.environ.get("O11N_ADMIN_TOKEN")
                    or (data_dir / "admin-token").read_text().strip()
                )
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise typer.Exit(1)


def _start_workers(
    count: int, url: str, token: str, data_dir: Path, drain_timeout: float
) -> list[subprocess.Popen[bytes]]:
    """Local workers, each with a worker token of its own in a file only root (or this
    user) can read: never the admin token, never in their argv or environment."""
    memory = host.memory_bytes() // max(count, 1)
    base = host.hostname()
    tokens = data_dir / "tokens"
    tokens.mkdir(mode=0o700, exist_ok=True)
    children = []
    for i in range(1, count + 1):
        name = f"{base}-{i}"
        token_file = tokens / name  # kept: the worker's name is bound to its token
        if not token_file.exists():
            write_token(token_file, _worker_token(url, token))
        args = ["worker", "--server", url, "--name", name, "--token-file", str(token_file)]
        args += ["--cpus", "1", "--memory", str(memory), "--drain-timeout", str(drain_timeout)]
        args += ["--workdir", str(data_dir / "work" / name)]
        children.append(spawn_o11n(args, data_dir / "logs" / f"worker-{i}.log", {}))
    return children


def _worker_token(url: str, admin: str) -> str:
    """A fresh worker token from the scheduler."""
    answer = httpx.post(
        f"{url}/api/v1/workers/tokens", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["token"])


def _announce(url: str, token: str, data_dir: Path, count: int, reapi: str | None) -> None:
    print(f"o11n is up at {url}: a scheduler and {count} worker{'s' * (count != 1)}")
    print(f"dashboard: {url}/  (sign in with the admin token below)")
    if reapi:
        print(f"Remote Execution API: bazel build --remote_executor={reapi} ...")
    print(f"admin token: {token}  (also in {data_dir / 'admin-token'})")
    print("submit a job from this folder:  o11n submit --wait -- echo hello")
    print(f"elsewhere: export O11N_SERVER={url} O11N_TOKEN={token}")
    print(f"logs in {data_dir / 'logs'}; Ctrl-C stops everything.", flush=True)


def _stop(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
