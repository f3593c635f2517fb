"""The `o11n` command: the scheduler, jobs, tenants and workers."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer

from o11n import __version__
from o11n.cli import admin, agents, autoscale, cost, jobs, pipeline, run, services, up, worker
from o11n.errors import O11nError, Unavailable


class SqliteSync(StrEnum):
    full = "full"
    normal = "normal"


class Provider(StrEnum):
    local = "local"
    kubernetes = "kubernetes"


class UnknownProperties(StrEnum):
    require = "require"
    ignore = "ignore"


app = typer.Typer(
    name="o11n",
    help="o11n: CI and build orchestration on a shared pool of machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(jobs.app, name="jobs")
app.add_typer(admin.tenants, name="tenants")
app.add_typer(admin.workers, name="workers")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(agents.app, name="agents")
app.add_typer(services.app, name="services")
app.add_typer(autoscale.app, name="autoscale")
app.add_typer(cost.app, name="cost")
app.command("offers")(agents.offers)
app.command("submit", context_settings={"allow_interspersed_args": False})(jobs.submit)
app.command("worker")(worker.worker)
app.command("up")(up.up)
app.command("run")(run.run)


@app.callback()
def root(
    ctx: typer.Context,
    server: str = typer.Option(None, envvar="O11N_SERVER", help="Scheduler URL."),
    token: str = typer.Option(None, envvar="O11N_TOKEN", help="API token."),
) -> None:
    """Submit and watch jobs, run the scheduler, manage tenants and workers."""
    ctx.obj = {"server": server, "token": token}


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8787, help="Port to listen on (0: any free port)."),
    data: Path = typer.Option(None, envvar="O11N_DATA", help="Data folder [default: ./.o11n]."),
    db: str = typer.Option(None, help="postgresql://... to use PostgreSQL instead of SQLite."),
    lease_seconds: float = typer.Option(30.0, min=0.2, help="Lease length of an attempt."),
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
    sqlite_sync: SqliteSync = typer.Option(
        SqliteSync.full,
        help="full: fsync every commit (survives power loss); normal: survives kill -9 only.",
    ),
    cas_cap: str = typer.Option(
        None,
        help="Cap the content-addressed store (e.g. 50G): least recently used blobs go first, "
        "never one that a cached result or a job in flight needs.",
    ),
    autoscale: Path = typer.Option(
        None,
        help="An instance catalog (YAML): start o11n workers on this machine for demand no "
        "worker can serve, and stop them when idle.",
    ),
    autoscale_provider: Provider = typer.Option(
        Provider.local,
        help="local: o11n worker processes here; kubernetes: worker Pods (in-cluster config).",
    ),
    kube_namespace: str = typer.Option("o11n", help="Namespace of the worker Pods."),
    kube_image: str = typer.Option("o11n:latest", help="Image of the worker Pods."),
    kube_server_url: str = typer.Option(
        "http://o11n-scheduler:8787", help="The scheduler's URL as worker Pods reach it."
    ),
    reapi_port: int = typer.Option(
        None, help="Serve the Bazel Remote Execution API (gRPC) on this port (0: any free one)."
    ),
    reapi_tenant: str = typer.Option(
        "default", help="The tenant of REAPI calls that carry no token."
    ),
    reapi_unknown_properties: UnknownProperties = typer.Option(
        UnknownProperties.require,
        help="Platform properties o11n does not know: require (a worker tag must match) or ignore.",
    ),
) -> None:
    """Run the scheduler."""
    from o11n.core.units import parse_size
    from o11n.reapi.server import ReapiConfig
    from o11n.scheduler.server import ServerConfig, data_dir_default, serve

    reapi = None
    if reapi_port is not None:
        reapi = ReapiConfig(reapi_port, host, reapi_tenant, reapi_unknown_properties.value)
    config = ServerConfig(
        data or data_dir_default(),
        host,
        port,
        db,
        lease_seconds,
        log_level,
        sqlite_sync.value,
        reapi,
        parse_size(cas_cap) if cas_cap is not None else None,
        autoscale,
        autoscale_provider.value,
        kube_namespace,
        kube_image,
        kube_server_url,
    )
    if autoscale is not None:
        from o11n.autoscale.catalog import load_catalog

        load_catalog(autoscale)  # a bad catalog is a usage error before anything starts

    def ready(url: str, _token: str, reapi_port: int | None) -> None:
        token_file = config.data_dir / "admin-token"
        print(f"o11n scheduler listening on {url}", flush=True)
        if reapi_port is not None:
            print(f"Remote Execution API on grpc://{host}:{reapi_port}", flush=True)
        print(f"admin token: in {token_file} (or $O11N_ADMIN_TOKEN)", flush=True)

    serve(config, ready)


def main() -> None:
    """Entry point: runs the command; errors are one line on stderr (exit 2 for bad input)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="o11n", standalone_mode=False)
    except typer.Abort:
        print("o11n: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors and bad options
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help(), file=sys.stderr)
        else:
            print(f"o11n: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except Unavailable as exc:
        print(f"o11n: error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except O11nError as exc:
        print(f"o11n: error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
