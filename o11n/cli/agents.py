"""`o11n agents ...` and `o11n offers`: the pool's machines, their attributes and free room."""

from __future__ import annotations

from typing import Any

import typer

from o11n.cli.output import JsonOption, client, print_json, table
from o11n.core.units import format_size

app = typer.Typer(help="Agents: attributes, disable and enable.", no_args_is_help=True)


@app.command("list")
def list_agents(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """Every agent with its attributes, disabled flag and tags."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/agents")["agents"]
    if json_:
        print_json(found)
        return
    table(
        ["INDEX", "IP", "HOSTNAME", "DISABLED", "STATE", "ATTRIBUTES", "TAGS"],
        [
            [
                i,
                a["ip"],
                a["name"],
                str(a["disabled"]).lower(),
                "draining" if a["draining"] else ("online" if a["online"] else "offline"),
                _pairs(a["attributes"]),
                _pairs(a["tags"]),
            ]
            for i, a in enumerate(found)
        ],
    )


@app.command("set-attr")
def set_attr(
    ctx: typer.Context,
    agent: str = typer.Option(..., "--agent", help="Agent names, comma-separated."),
    key: str = typer.Option(..., "--key", help="The attribute, e.g. city."),
    string: str | None = typer.Option(None, "--string", help="A string value, e.g. shenzhen."),
    scalar: float | None = typer.Option(None, "--scalar", help="A number, e.g. 24."),
    delete: bool = typer.Option(False, "--delete", help="Remove the attribute."),
) -> None:
    """Set a string or scalar attribute on agents, or delete it (admin)."""
    if (string is not None) + (scalar is not None) + delete != 1:
        raise typer.BadParameter("give exactly one of --string, --scalar or --delete")
    names = [n.strip() for n in agent.split(",") if n.strip()]
    body: dict[str, Any] = {"agents": names, "key": key}
    if delete:
        body["delete"] = True
    elif string is not None:
        body["string"] = string
    else:
        body["scalar"] = scalar
    with client(ctx) as api:
        api.request("POST", "/api/v1/agents/attributes", body=body, retry=False)
    what = "deleted" if delete else f"= {string if string is not None else _text(scalar)}"
    print(f"{key} {what} on {', '.join(names)}")


@app.command("disable")
def disable(ctx: typer.Context, name: str) -> None:
    """Give an agent no new jobs or service tasks; what it runs goes on (admin)."""
    with client(ctx) as api:
        api.request("POST", f"/api/v1/agents/{name}/disable", retry=False)
    print(f"agent {name} disabled")


@app.command("enable")
def enable(ctx: typer.Context, name: str) -> None:
    """Let a disabled agent take work again (admin)."""
    with client(ctx) as api:
        api.request("POST", f"/api/v1/agents/{name}/enable", retry=False)
    print(f"agent {name} enabled")


def offers(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """What each online, enabled agent has free: one row per agent."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/offers")["agents"]
    if json_:
        print_json(found)
        return
    keys = sorted({k for a in found for k, v in a["attributes"].items() if isinstance(v, str)})
    table(
        [
            *("INDEX", "IP", "HOSTNAME", "CPUS", "MEM", "DISK", "GPUS"),
            *map(str.upper, keys),
            *("SANDBOX", "PORTS"),
        ],
        [
            [
                i,
                a["ip"],
                a["name"],
                f"{a['free']['cpu']:.2f}",
                format_size(int(a["free"]["memory"])),
                format_size(a["disk"]),
                f"{a['free']['gpu']:g}",
                *(str(a["attributes"].get(k, "")) for k in keys),
                a["tags"].get("sandbox", "?"),  # the worker says whether it isolates jobs
                a["ports"],
            ]
            for i, a in enumerate(found)
        ],
    )


def _pairs(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={_text(v)}" for k, v in sorted(values.items()))


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
