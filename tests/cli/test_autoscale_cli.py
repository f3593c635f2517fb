"""`o11n autoscale simulate`: JSON for scripts, a table for people, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples" / "autoscale"
SEED = ["--trace", str(EXAMPLES / "rust-ci.csv"), "--catalog", str(EXAMPLES / "catalog.yaml")]


def o11n(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "o11n", "autoscale", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_simulate_json_on_the_seed_example() -> None:
    done = o11n("simulate", *SEED, "--baseline", "32c64g:2600", "--seed", "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in ("total_cost", "baseline_cost", "cost_ratio", "wait_p50_s", "wait_p95_s"):
        assert isinstance(report[key], int | float), key
    assert report["jobs"] == 1176 and report["unserved"] == 0
    assert report["instances_started"] > 0 and report["interruptions"] == 0
    assert 0 < report["cost_ratio"] < 0.1  # the seed's "about 1/20"
    assert sum(report["served_by"].values()) == 1.0


def test_options_override_the_catalog_and_the_table_is_for_people() -> None:
    done = o11n(
        "simulate", *SEED, "--baseline", "32c64g:2600", "--spot-duration", "0s",
        "--spot-strategy", "none",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "total cost" in done.stdout and "cost / baseline" in done.stdout
    assert "served by ecs.c6.2xlarge" in done.stdout  # cheapest on demand


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("submit_s,cpu,memory,duration_s,tags,tenant\n0,eight,1G,10,,t\n")
    cases = [
        ["--trace", str(bad), "--catalog", str(EXAMPLES / "catalog.yaml")],
        ["--trace", str(tmp_path / "missing.csv"), "--catalog", str(EXAMPLES / "catalog.yaml")],
        [*SEED, "--baseline", "lots"],
        [*SEED, "--spot-strategy", "price_limit"],
    ]
    for args in cases:
        done = o11n("simulate", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("o11n: error: ") and done.stderr.count("\n") == 1
    assert "bad.csv:2:1: cpu 'eight' is not a number" in o11n("simulate", *cases[0]).stderr
