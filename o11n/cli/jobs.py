"""`o11n submit` and `o11n jobs ...`: submit, list, show, cancel, watch and read logs."""

from __future__ import annotations

import sys
from typing import Any

import typer

from o11n.cli.output import JsonOption, ago, client, clock, console, pairs, print_json, table
from o11n.core.jobs import Job
from o11n.core.units import format_size, parse_duration, parse_size
from o11n.errors import BadRequest

app = typer.Typer(help="List, show, cancel and watch jobs.", no_args_is_help=True)


def _spec(
    command: list[str],
    tag: list[str] | None,
    label: list[str] | None,
    env: list[str] | None,
    cpu: float,
    memory: str,
    gpu: int,
    priority: int,
    timeout: str,
    retries: int | None,
    name: str | None,
    tenant: str | None,
) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = {
            # One argument with spaces is a shell script; otherwise an argv list.
            "command": command[0] if len(command) == 1 and " " in command[0] else command,
            "tags": pairs(tag, "tag"),
            "labels": pairs(label, "label"),
            "env": pairs(env, "env"),
            "resources": {"cpu": cpu, "memory": parse_size(memory), "gpu": gpu},
            "priority": priority,
            "timeout": parse_duration(timeout),
        }
    except BadRequest as exc:
        raise typer.BadParameter(exc.message) from None
    if retries is not None:
        spec["retry"] = {"max_attempts": retries + 1, "when": ["lost", "timeout", "failure"]}
    if name:
        spec["name"] = name
    if tenant:
        spec["tenant"] = tenant
    return spec


def submit(
    ctx: typer.Context,
    command: list[str] = typer.Argument(
        ..., help="The command (after --); one quoted argument with spaces runs as a shell script."
    ),
    tag: list[str] = typer.Option(None, "--tag", "-t", help="Required worker tag KEY=VALUE."),
    cpu: float = typer.Option(1.0, help="Cores needed."),
    memory: str = typer.Option("0", help="Memory needed, e.g. 512M or 2G."),
    gpu: int = typer.Option(0, help="GPUs needed."),
    priority: int = typer.Option(0, help="Higher runs first within a tenant (-1000..1000)."),
    timeout: str = typer.Option("1h", help="Time limit, e.g. 90s, 20m, 2h."),
    retries: int = typer.Option(None, help="Retry up to N times on failure, timeout or loss."),
    label: list[str] = typer.Option(None, "--label", "-l", help="Label KEY=VALUE."),
    env: list[str] = typer.Option(None, "--env", "-e", help="Environment variable NAME=VALUE."),
    name: str = typer.Option(None, help="Job name [default: the program's name]."),
    tenant: str = typer.Option(None, help="Submit for this tenant (admin token only)."),
    image: str = typer.Option(None, help="Run in this container image."),
    network: bool = typer.Option(False, help="Give a container job a network."),
    wait: bool = typer.Option(
        False, "--wait", "-w", help="Stream the log; exit with the job's exit code."
    ),
) -> None:
    """Submit a job and print its id: o11n submit [OPTIONS] -- CMD..."""
    spec = _spec(
        command, tag, label, env, cpu, memory, gpu, priority, timeout, retries, name, tenant
    )
    if image:
        spec["image"], spec["network"] = image, network
    with client(ctx) as api:
        job_id = api.submit(spec)
        if not wait:
            print(job_id)
            return
        print(f"job {job_id}", file=sys.stderr)
        raise typer.Exit(_follow(api, job_id, quiet_events=True))


def _follow(api: Any, job_id: int, quiet_events: bool) -> int:
    """Print a job's log (and events) until it ends; return the exit code to end with."""
    for message in api.watch(job_id):
        if message["type"] == "log":
            stream = sys.stdout if message["stream"] == "stdout" else sys.stderr
            stream.write(message["data"])
            stream.flush()
        elif not quiet_events:
            console.print(_event_line(message), style="dim")
    job = api.get(job_id)
    if job.state == "succeeded":
        return 0
    if job.state == "failed" and job.exit_code is not None and job.exit_code > 0:
        return int(job.exit_code)
    print(f"o11n: job {job_id} {job.state}: {job.reason or 'no reason given'}", file=sys.stderr)
    return 1


def _event_line(message: dict[str, Any]) -> str:
    worker = f" on {message['worker']}" if message.get("worker") else ""
    reason = f" ({message['reason']})" if message.get("reason") else ""
    attempt = f" attempt {message['attempt']}" if message.get("attempt") else ""
    what = f"job {message['job_id']} {message['state']}"
    return f"{clock(message['at'])} {what}{attempt}{worker}{reason}"


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: list[str] = typer.Option(None, "--state", "-s", help="Only jobs in this state."),
    tenant: str = typer.Option(None, help="Only this tenant's jobs."),
    tag: list[str] = typer.Option(None, "--tag", "-t", help="Only jobs requiring KEY=VALUE."),
    label: list[str] = typer.Option(None, "--label", "-l", help="Only jobs labelled KEY=VALUE."),
    limit: int = typer.Option(50, min=1, max=500, help="Jobs per page."),
    cursor: str = typer.Option(None, help="Continue after a previous page."),
    json_: bool = JsonOption,
) -> None:
    """List jobs, newest first."""
    with client(ctx) as api:
        jobs, next_cursor = api.jobs(
            states=state or (),
            tenant=tenant,
            tags=pairs(tag, "tag"),
            labels=pairs(label, "label"),
            limit=limit,
            cursor=cursor,
        )
    if json_:
        print_json({"jobs": [j.model_dump(mode="json") for j in jobs], "next_cursor": next_cursor})
        return
    table(
        ["ID", "TENANT", "NAME", "STATE", "ATTEMPT", "PRIO", "TAGS", "AGE"],
        [
            [
                j.id,
                j.tenant,
                j.name,
                j.state,
                j.attempt,
                j.priority,
                ",".join(f"{k}={v}" for k, v in j.tags.items()),
                ago(j.created_at),
            ]
            for j in jobs
        ],
    )
    if next_cursor:
        print(f"more: --cursor {next_cursor}", file=sys.stderr)


@app.command()
def show(ctx: typer.Context, job_id: int, json_: bool = JsonOption) -> None:
    """Show one job and its attempts."""
    with client(ctx) as api:
        job = api.get(job_id)
    if json_:
        print_json(job.model_dump(mode="json"))
        return
    _show(job)


def _show(job: Job) -> None:
    command = job.command if isinstance(job.command, str) else " ".join(job.command)
    res = job.resources
    fields = [
        ("id", job.id),
        ("name", job.name),
        ("tenant", job.tenant),
        ("state", job.state),
        ("command", command),
        ("tags", ", ".join(f"{k}={v}" for k, v in job.tags.items())),
        ("resources", f"cpu={res.cpu:g} memory={format_size(res.memory)} gpu={res.gpu}"),
        ("priority", job.priority),
        ("timeout", f"{job.timeout:g}s"),
        ("labels", ", ".join(f"{k}={v}" for k, v in job.labels.items())),
        ("exit code", job.exit_code),
        ("reason", job.reason),
        ("created", clock(job.created_at)),
        ("finished", clock(job.finished_at)),
    ]
    for key, value in fields:
        if value not in (None, ""):
            console.print(f"[bold]{key:>10}[/bold]  {value}", markup=True)
    if job.attempts:
        print()
        table(
            ["ATTEMPT", "WORKER", "STATE", "OUTCOME", "EXIT", "STARTED", "ENDED", "REASON"],
            [
                [
                    a.number,
                    a.worker,
                    a.state,
                    a.outcome,
                    a.exit_code,
                    clock(a.started_at),
                    clock(a.ended_at),
                    a.reason,
                ]
                for a in job.attempts
            ],
        )


@app.command()
def cancel(ctx: typer.Context, job_id: int, json_: bool = JsonOption) -> None:
    """Cancel a queued or running job."""
    with client(ctx) as api:
        state = api.cancel(job_id)
    if json_:
        print_json({"id": job_id, "state": state})
    else:
        print(f"job {job_id} {state}")


@app.command()
def watch(ctx: typer.Context, job_id: int, json_: bool = JsonOption) -> None:
    """Follow a job's events and log until it ends."""
    with client(ctx) as api:
        if json_:
            for message in api.watch(job_id):
                print_json(message)
            return
        raise typer.Exit(_follow(api, job_id, quiet_events=False))


@app.command()
def events(ctx: typer.Context, job_id: int, json_: bool = JsonOption) -> None:
    """A job's events so far."""
    with client(ctx) as api:
        found = api.events(job_id)
    if json_:
        print_json([e.model_dump(mode="json") for e in found])
        return
    table(
        ["EVENT", "AT", "STATE", "FROM", "ATTEMPT", "WORKER", "REASON"],
        [[e.id, clock(e.at), e.state, e.previous, e.attempt, e.worker, e.reason] for e in found],
    )


@app.command()
def logs(
    ctx: typer.Context,
    job_id: int,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
) -> None:
    """Print a job's log (stdout to stdout, stderr to stderr)."""
    with client(ctx) as api:
        if follow:
            for message in api.watch(job_id):
                if message["type"] == "log":
                    out = sys.stdout if message["stream"] == "stdout" else sys.stderr
                    out.write(message["data"])
                    out.flush()
            return
        position = (0, -1)
        while True:
            page = api.logs(job_id, position)
            for chunk in page["chunks"]:
                out = sys.stdout if chunk["stream"] == "stdout" else sys.stderr
                out.write(chunk["data"])
            if not page["chunks"]:
                return
            position = (page["next_attempt"], page["next_seq"])
