"""`o11n cost report`: what the attempts cost, by tenant, pipeline, day or worker."""

from __future__ import annotations

from enum import StrEnum

import typer

from o11n.cli.output import JsonOption, client, print_json, table

app = typer.Typer(help="Cost: runtime priced by the workers' price per hour.", no_args_is_help=True)


class By(StrEnum):
    tenant = "tenant"
    pipeline = "pipeline"
    day = "day"
    worker = "worker"


@app.command("report")
def cost_report(
    ctx: typer.Context,
    by: By = typer.Option(By.tenant, "--by", help="Group by tenant, pipeline, day or worker."),
    since: float = typer.Option(0.0, min=0, help="Only attempts that ended after (Unix s)."),
    json_: bool = JsonOption,
) -> None:
    """Each attempt costs its runtime times its share (its cores over the worker's) of the
    worker's `price` attribute per hour (set by the autoscaler, or with `o11n agents
    set-attr --key price --scalar P`)."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/cost", params={"by": by.value, "since": since})
    if json_:
        print_json(found)
        return
    rows = [
        [line["key"], line["attempts"], f"{line['hours']:.3f}", f"{line['cost']:.4f}"]
        for line in found["lines"]
    ]
    rows.append(
        ["total", sum(line["attempts"] for line in found["lines"]), "", f"{found['total']:.4f}"]
    )
    table([by.value.upper(), "ATTEMPTS", "HOURS", "COST"], rows)
