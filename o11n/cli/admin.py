"""`o11n tenants ...` and `o11n workers ...`: the platform team's commands."""

from __future__ import annotations

import typer

from o11n.cli.output import JsonOption, ago, client, print_json, table
from o11n.core.units import format_size

tenants = typer.Typer(help="Tenants: who shares the pool, with what weight.", no_args_is_help=True)
workers = typer.Typer(help="Workers: tokens, the pool, draining.", no_args_is_help=True)


@tenants.command("create")
def create_tenant(
    ctx: typer.Context,
    name: str,
    weight: float = typer.Option(1.0, min=0.001, help="Share of the pool relative to others."),
    json_: bool = JsonOption,
) -> None:
    """Create a tenant and print its token (shown only once)."""
    with client(ctx) as api:
        tenant = api.create_tenant(name, weight)
    if json_:
        print_json(tenant)
    else:
        print(tenant["token"])


@tenants.command("list")
def list_tenants(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """Tenants with their weights and queued jobs."""
    with client(ctx) as api:
        found = api.tenants()
    if json_:
        print_json(found)
        return
    table(
        ["TENANT", "WEIGHT", "QUEUED"],
        [[t["name"], f"{t['weight']:g}", t["queued"]] for t in found],
    )


@workers.command("token")
def worker_token(ctx: typer.Context) -> None:
    """Print a new token for workers."""
    with client(ctx) as api:
        print(api.worker_token())


@workers.command("list")
def list_workers(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """Workers with their tags, capacity, free resources and jobs."""
    with client(ctx) as api:
        found = api.workers()
    if json_:
        print_json(found)
        return

    def res(r: dict[str, float]) -> str:
        return f"{r['cpu']:g}cpu {format_size(int(r['memory']))} {r['gpu']:g}gpu"

    table(
        ["WORKER", "STATE", "TAGS", "CAPACITY", "FREE", "JOBS", "SEEN"],
        [
            [
                w["name"],
                "draining" if w["draining"] else ("online" if w["online"] else "offline"),
                ",".join(f"{k}={v}" for k, v in sorted(w["tags"].items())),
                res(w["capacity"]),
                res(w["free"]),
                len(w["running"]),
                ago(w["last_seen"]),
            ]
            for w in found
        ],
    )


@workers.command("drain")
def drain(ctx: typer.Context, name: str) -> None:
    """Give a worker no new work; it finishes what it runs, then exits."""
    with client(ctx) as api:
        api.drain(name)
    print(f"worker {name} draining")
