"""`o11n autoscale ...`: elastic capacity; `simulate` replays a trace in virtual time."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from o11n.autoscale.catalog import load_catalog, load_trace
from o11n.autoscale.simulate import Report, SimConfig, parse_baseline, simulate
from o11n.cli.output import JsonOption, client, print_json, table
from o11n.core.autoscale import AutoscaleConfig
from o11n.core.units import parse_duration

app = typer.Typer(
    help="Elastic capacity: workers started on demand from an instance catalog.",
    no_args_is_help=True,
)


@app.command("simulate")
def simulate_command(
    trace: Path = typer.Option(..., "--trace", help="Workload CSV: submit_s,cpu,memory,..."),
    catalog: Path = typer.Option(..., "--catalog", help="Instance catalog (YAML)."),
    baseline: str = typer.Option(
        None, help='A dedicated machine to compare with: "32c64g:2600" (price per month).'
    ),
    seed: int = typer.Option(0, help="Seed of the spot reclaims."),
    reclaim_rate: float = typer.Option(
        0.0, min=0.0, help="Spot reclaims per instance-hour after the protection period."
    ),
    start_delay: str = typer.Option("30s", help="How long an instance takes to boot."),
    spot_strategy: str = typer.Option(
        None, help="price_limit, follow_market or none [default: the catalog's, or market]."
    ),
    price_limit: float = typer.Option(None, min=0.0, help="Spot price limit per hour."),
    spot_duration: str = typer.Option(None, help="Spot protection period, e.g. 1h."),
    idle_ttl: str = typer.Option(None, help="Stop a worker idle this long, e.g. 60s."),
    scale_up_after: str = typer.Option(None, help="Start a worker for demand this old."),
    max_workers: int = typer.Option(None, min=0, help="At most this many instances."),
    budget: float = typer.Option(None, min=0.0, help="At most this much per hour."),
    json_: bool = JsonOption,
) -> None:
    """Replay a trace through the real matching and autoscaling code in virtual time, and
    report cost, queue wait and spot interruptions."""
    loaded = load_catalog(catalog)
    jobs = load_trace(trace)
    overrides: dict[str, Any] = {
        "spot_strategy": spot_strategy,
        "price_limit": price_limit,
        "spot_duration_s": _seconds(spot_duration),
        "idle_ttl_s": _seconds(idle_ttl),
        "scale_up_after_s": _seconds(scale_up_after),
        "max_workers": max_workers,
        "budget_per_hour": budget,
    }
    config = replace(
        loaded.autoscale or AutoscaleConfig(),
        **{k: v for k, v in overrides.items() if v is not None},
    )
    sim = SimConfig(parse_duration(start_delay), reclaim_rate, seed)
    report = simulate(jobs, loaded, config, sim, parse_baseline(baseline) if baseline else None)
    if json_:
        print_json(report.as_dict())
    else:
        _show(report)


def _seconds(text: str | None) -> float | None:
    return None if text is None else parse_duration(text)


def _show(report: Report) -> None:
    money = report.currency
    rows: list[list[Any]] = [
        ["jobs", f"{report.jobs} ({report.unserved} never served)"],
        ["total cost", f"{report.total_cost:.2f} {money}"],
        ["instances started", report.instances_started],
        ["instance hours", f"{report.instance_hours:.1f}"],
        ["spot interruptions", report.interruptions],
        [
            "queue wait p50 / p95 / max",
            _waits(report.wait_p50_s, report.wait_p95_s, report.wait_max_s),
        ],
    ]
    if report.baseline_cost is not None and report.baseline is not None:
        base = report.baseline
        ratio = f" (1/{1 / report.cost_ratio:.1f})" if report.cost_ratio else ""
        rows += [
            [
                f"baseline {base['machine']} for {base['days']} days",
                f"{report.baseline_cost:.2f} {money}",
            ],
            ["cost / baseline", f"{report.cost_ratio or 0:.4f}{ratio}"],
            [
                "baseline queue wait p50 / p95 / max",
                _waits(base["wait_p50_s"], base["wait_p95_s"], base["wait_max_s"]),
            ],
        ]
    rows += [[f"served by {name}", f"{share:.1%}"] for name, share in report.served_by.items()]
    table(["", "SIMULATED"], rows)


def _waits(*seconds: float) -> str:
    return " / ".join(f"{s:.0f}s" for s in seconds)


@app.command("events")
def events_command(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """The running autoscaler's decisions with their reasons, oldest first (admin)."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/autoscale/events")["events"]
    if json_:
        print_json(found)
        return
    table(
        ["AT", "EVENT", "WORKER", "TYPE", "REASON"],
        [
            [_clock(e["at"]), e["kind"], e["worker"] or "", e["instance_type"] or "", e["reason"]]
            for e in found
        ],
    )


@app.command("status")
def status_command(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """The instances the running autoscaler started, live and stopped (admin)."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/autoscale")
    if json_:
        print_json(found)
        return
    table(
        ["WORKER", "TYPE", "ZONE", "PRICE/H", "SPOT", "STARTED", "STOPPED"],
        [
            [
                i["worker"],
                i["type"],
                i["zone"],
                f"{i['hourly_price']:g} {found['currency']}",
                "yes" if i["spot"] else "no",
                _clock(i["started_at"]),
                "reclaimed"
                if i["reclaimed"]
                else (_clock(i["stopped_at"]) if i["stopped_at"] else ""),
            ]
            for i in found["instances"]
        ],
    )
    print(f"spot interruptions: {found['interruptions']}")


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))
