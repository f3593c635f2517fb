"""`o11n run FILE`: run a pipeline and watch it, on O11N_SERVER or on a local scheduler."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.filesize import decimal
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from o11n.cli.output import console, pairs
from o11n.cli.up import spawn_o11n
from o11n.client import Client
from o11n.pipeline.loader import load_file
from o11n.worker import host

POLL_SECONDS = 0.25
STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "skipped": "dim",
    "cached": "cyan",
    "running": "bold",
    "pending": "dim",
    "queued": "dim",
    "assigned": "dim",
}


def run(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The pipeline file."),
    var: list[str] = typer.Option(None, "--var", help="Override a variable: K=V."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Run nothing: each substage ends with 0, or with $O11N_FAKE_<SUBSTAGE>_RC.",
    ),
    workers: int = typer.Option(
        None, min=1, help="Local workers, without O11N_SERVER [default: one per core]."
    ),
    workspace: Path = typer.Option(
        None,
        "--workspace",
        file_okay=False,
        exists=True,
        help="The folder every substage starts with [default: the pipeline file's folder].",
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Run every substage, even those with a cached success."
    ),
    json_: bool = typer.Option(False, "--json", help="Print the final pipeline record."),
) -> None:
    """Run a pipeline and show its stages as they go; exit 0 if it succeeded, else 1."""
    pipeline = load_file(file)  # errors name the line and column before anything starts
    body = {
        "pipeline": file.read_text(),
        "file_name": str(file),
        "vars": pairs(var, "variable"),
        "dry_run": dry_run,
        "fake_exit_codes": _fake_exit_codes(),
        "no_cache": no_cache,
    }
    obj = ctx.obj or {}
    server = obj.get("server") or os.environ.get("O11N_SERVER")
    with _scheduler(server, obj.get("token"), workers) as client:
        body["workspace"] = _upload(client, workspace or file.resolve().parent, quiet=json_)
        pipeline_id = client.request("POST", "/api/v1/pipelines", body=body)["id"]
        if not json_:
            console.print(f"pipeline {pipeline_id}: {pipeline.name}", style="bold")
        try:
            record = _follow(client, pipeline_id, quiet=json_)
        except KeyboardInterrupt:  # the pipeline must not go on (or resume) unwatched
            client.request("POST", f"/api/v1/pipelines/{pipeline_id}/cancel", retry=False)
            console.print(f"pipeline {pipeline_id} cancelled", style="yellow")
            raise typer.Exit(130) from None
    if json_:
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
    raise typer.Exit(0 if record["state"] == "succeeded" else 1)


def _upload(client: Client, folder: Path, quiet: bool) -> str:
    """Store the workspace, showing progress while blobs go up; its tree's digest."""
    with Progress(
        TextColumn("workspace"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    ) as bar:
        task = bar.add_task("upload", total=None)
        digest, done = client.upload_tree(
            folder, progress=lambda sent, total: bar.update(task, completed=sent, total=total)
        )
    if not quiet:
        console.print(
            f"workspace {folder}: {done.files} files, {done.uploaded} uploaded "
            f"({decimal(done.uploaded_bytes)})",
            style="dim",
            highlight=False,
        )
    return digest


def _fake_exit_codes() -> dict[str, int]:
    codes = {}
    for key, value in os.environ.items():
        if key.startswith("O11N_FAKE_") and key.endswith("_RC"):
            try:
                codes[key] = int(value)
            except ValueError:
                raise typer.BadParameter(f"{key}={value!r} is not an exit code") from None
    return codes


@contextmanager
def _scheduler(server: str | None, token: str | None, workers: int | None) -> Iterator[Client]:
    """A client of O11N_SERVER, or of a scheduler and workers started for this run."""
    if server:
        with Client(server, token) as client:
            yield client
        return
    with _data_dir() as data:
        port = _free_port()
        count = workers or host.cores()
        up = spawn_o11n(
            [
                "up",
                "--workers",
                str(count),
                "--port",
                str(port),
                "--data",
                str(data),
                "--drain-timeout",
                "2",
            ],
            data / "up.log",
            {},
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(up, url, data)
            with Client(url, (data / "admin-token").read_text().strip()) as client:
                yield client
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


@contextmanager
def _data_dir() -> Iterator[Path]:
    """Where the local scheduler keeps its database and store: kept between runs (so the
    step cache works) under ~/.cache/o11n/run, or a temporary folder when another run
    holds that one."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "o11n" / "run"
    with contextlib.ExitStack() as stack:
        why = _hold(cache, stack)
        if why is None:
            yield cache
            return
        console.print(f"no step cache: {why}", style="yellow")
        yield Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="o11n-run-")))


def _hold(folder: Path, stack: contextlib.ExitStack) -> str | None:
    """Lock `folder` for this run (released with `stack`); why not, if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = stack.enter_context((folder / "lock").open("w"))
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"another o11n run is using {folder}"
    except OSError as exc:
        return f"cannot use {folder}: {exc.strerror}"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(up: subprocess.Popen[bytes], url: str, data: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise typer.BadParameter(f"the local scheduler did not start: see {data / 'up.log'}")
        try:
            if (
                httpx.get(url + "/healthz", timeout=1).status_code == 200
                and (data / "admin-token").exists()
            ):
                workers = httpx.get(
                    url + "/api/v1/workers",
                    timeout=1,
                    headers={
                        "Authorization": f"Bearer {(data / 'admin-token').read_text().strip()}"
                    },
                )
                if workers.status_code == 200 and workers.json()["workers"]:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise typer.BadParameter("the local scheduler did not start in 60 s")


def _follow(client: Client, pipeline_id: int, quiet: bool) -> dict[str, Any]:
    """Poll the pipeline until it ends, showing it live; print failing substages' logs."""
    shown_logs: set[int] = set()
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            record: dict[str, Any] = client.request("GET", f"/api/v1/pipelines/{pipeline_id}")
            jobs = _jobs(client, pipeline_id)
            if not quiet:
                _print_failed_logs(client, record, jobs, shown_logs, live)
                live.update(_table(record, jobs), refresh=True)
            if record["state"] != "running":
                break
            time.sleep(POLL_SECONDS)
    if not quiet:
        console.print()  # the live table leaves the cursor at the end of its last row
        console.print(
            f"pipeline {pipeline_id} {record['state']}", style=STATE_STYLE.get(record["state"], "")
        )
    return record


def _jobs(client: Client, pipeline_id: int) -> dict[int, Any]:
    jobs, _ = client.jobs(labels={"o11n.pipeline": str(pipeline_id)}, limit=500)
    return {job.id: job for job in jobs}


def _table(record: dict[str, Any], jobs: dict[int, Any]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("STAGE", "SUBSTAGE", "STATE", "ATTEMPT", "JOB", "DURATION"):
        table.add_column(column)
    for stage in record["stages"]:
        for sub in stage["substages"]:
            job_ids = [c["job_id"] for c in sub.get("copies", []) if c.get("job_id")]
            job = jobs.get(job_ids[-1]) if job_ids else None
            state = sub.get("state") or stage["state"]
            if state == "running" and job is not None and job.state in ("queued", "assigned"):
                state = job.state  # waiting for a worker that fits
            cached = sub.get("cached_from")
            table.add_row(
                escape(stage["name"]),
                escape(sub["name"]),
                f"[{STATE_STYLE.get(state, '')}]{state}",
                str(job.attempt) if job else "",
                f"from {cached}" if cached else ",".join(map(str, job_ids)),
                "" if cached else _duration(job),
            )
    return table


def _duration(job: Any) -> str:
    if job is None:
        return ""
    end = job.finished_at or time.time()
    return f"{end - job.created_at:.1f}s"


def _print_failed_logs(
    client: Client, record: dict[str, Any], jobs: dict[int, Any], shown: set[int], live: Live
) -> None:
    for stage in record["stages"]:
        for sub in stage["substages"]:
            for copy in sub.get("copies", []):
                job = jobs.get(copy.get("job_id") or 0)
                if job is None or job.id in shown or job.state not in ("failed", "error"):
                    continue
                shown.add(job.id)
                text = "".join(c["data"] for c in client.logs(job.id)["chunks"])
                live.console.print(
                    f"--- {sub['name']} (job {job.id}) {job.state}: {job.reason or ''}", style="red"
                )
                live.console.print(text.rstrip("\n"), markup=False, highlight=False)
