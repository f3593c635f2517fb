"""`o11n services ...`: long-running services such as a distcc farm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from o11n.cli.output import JsonOption, client, print_json, table
from o11n.core.services import ServiceSpec
from o11n.errors import SpecError
from o11n.pipeline.loader import load_model

app = typer.Typer(
    help="Services: long-running tasks the scheduler keeps alive.", no_args_is_help=True
)
Namespace = typer.Option("default", "--namespace", "-n", help="The service's namespace.")


def _path(name: str, namespace: str) -> str:
    ns, _, short = name.rpartition("/")
    return f"/api/v1/services/{ns or namespace}/{short}"


@app.command("apply")
def apply(ctx: typer.Context, file: Path, json_: bool = JsonOption) -> None:
    """Create a service from its file, or change it (tasks roll over one by one)."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read the service: {exc.strerror}", str(file), 1, 1) from None
    spec = load_model(text, str(file), ServiceSpec, "service")  # errors before any request
    with client(ctx) as api:
        answer = api.request(
            "POST", "/api/v1/services", body={"service": text, "file_name": str(file)}
        )
    if json_:
        print_json(answer)
        return
    print(f"service {spec.key} {answer['result']}")


@app.command("list")
def list_services(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """Services with their instances, running tasks and why any wait."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/services")["services"]
    if json_:
        print_json(found)
        return
    table(
        ["NAMESPACE", "NAME", "TENANT", "INSTANCES", "RUNNING", "VERSION", "WAITING"],
        [
            [
                s["namespace"],
                s["name"],
                s["tenant"],
                s["instances"],
                s["running"],
                s["version"],
                s.get("reason") or "",
            ]
            for s in found
        ],
    )


@app.command("inspect")
def inspect(
    ctx: typer.Context, name: str, namespace: str = Namespace, json_: bool = JsonOption
) -> None:
    """A service's tasks: agent, host IP, named ports, state, restarts, last exit."""
    with client(ctx) as api:
        svc = api.request("GET", _path(name, namespace))
    if json_:
        print_json(svc)
        return
    print(
        f"service {svc['namespace']}/{svc['name']}: {svc['running']}/{svc['instances']} running"
        + (" (deleting)" if svc["deleting"] else "")
    )
    if svc.get("reason"):
        print(f"waiting: {svc['reason']}")
    table(
        ["TASK", "STATE", "AGENT", "HOSTIP", "PORTS", "RESTARTS", "LAST EXIT", "JOB"],
        [
            [
                t["index"],
                t["state"],
                t["agent"] or "",
                t["ip"] or "",
                ",".join(f"{k}={v}" for k, v in t["ports"].items()),
                t["restarts"],
                t["last_exit"] or "",
                t["job_id"] or "",
            ]
            for t in svc["tasks"]
        ],
    )


@app.command("scale")
def scale(ctx: typer.Context, name: str, instances: int, namespace: str = Namespace) -> None:
    """Run this many tasks of a service."""
    if instances < 0:
        raise typer.BadParameter("instances must be 0 or more")
    with client(ctx) as api:
        svc = api.request("POST", _path(name, namespace) + "/scale", body={"instances": instances})
    print(f"service {svc['namespace']}/{svc['name']} scaled to {instances}")


@app.command("delete")
def delete(ctx: typer.Context, name: str, namespace: str = Namespace) -> None:
    """Stop every task of a service and forget it."""
    with client(ctx) as api:
        svc = api.request("DELETE", _path(name, namespace), retry=False)
    print(f"service {svc['namespace']}/{svc['name']} deleted")


@app.command("endpoints")
def endpoints(
    ctx: typer.Context,
    name: str,
    namespace: str = Namespace,
    fmt: str = typer.Option(
        "hostport", "--format", help="json, hostport, or distcc-hosts (a DISTCC_HOSTS value)."
    ),
    port: str = typer.Option(None, help="Which named port [default: the first]."),
) -> None:
    """Where the running tasks listen."""
    if fmt not in ("json", "hostport", "distcc-hosts"):
        raise typer.BadParameter("--format is json, hostport or distcc-hosts")
    with client(ctx) as api:
        found = api.request("GET", _path(name, namespace) + "/endpoints")["endpoints"]
        svc = api.request("GET", _path(name, namespace)) if fmt == "distcc-hosts" else None
    if fmt == "json":
        print_json(found)
        return
    pairs = [(e["ip"], _port(e, port)) for e in found]
    if svc is None:
        print("\n".join(f"{ip}:{p}" for ip, p in pairs))
        return
    limit = max(1, round(float(svc["spec"].get("resources", {}).get("cpu", 1))))
    print(" ".join(f"{ip}:{p}/{limit}" for ip, p in pairs))


def _port(endpoint: dict[str, Any], name: str | None) -> int:
    ports: dict[str, int] = endpoint["ports"]
    if name is None:
        if not ports:
            raise typer.BadParameter("the service has no ports")
        return next(iter(ports.values()))
    if name not in ports:
        raise typer.BadParameter(f"no port {name!r}; the ports are {', '.join(ports)}")
    return ports[name]


@app.command("metrics")
def metrics(
    ctx: typer.Context, name: str, namespace: str = Namespace, json_: bool = JsonOption
) -> None:
    """The latest values scraped from each running task."""
    with client(ctx) as api:
        found = api.request("GET", _path(name, namespace) + "/metrics")["tasks"]
    if json_:
        print_json(found)
        return
    rows: list[list[Any]] = []
    for t in found:
        if not t["up"]:
            rows.append([t["task"], t["agent"], 0, "", t["error"] or ""])
        for s in t["samples"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items()))
            rows.append(
                [
                    t["task"],
                    t["agent"],
                    1,
                    s["name"] + (f"{{{labels}}}" if labels else ""),
                    f"{s['value']:g}",
                ]
            )
    table(["TASK", "AGENT", "UP", "NAME", "VALUE"], rows)
