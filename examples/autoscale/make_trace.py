"""Write rust-ci.csv: the seed's month of heavy Rust CI, as a trace for the simulator.

The seed (gitlab-runner-eci-spot) reports 1,176 CI pipelines in August on spot ECI. It
gives no arrival times or durations, so these are ASSUMPTIONS:

- one ECI job per pipeline: the Rust release build (`cargo build --release`, the seed's
  job has a 30-minute timeout), asking 8 cpu and 16G, tag pool=eci;
- its run time is log-normal around 13 minutes, kept between 5 and 30 minutes;
- August 2023 (31 days, the 1st a Tuesday); weekdays carry nearly all pushes, a weekend
  day about a seventh of a weekday;
- pushes follow working hours in China (peaks late morning and 15:00-18:00, some
  evening work), and a quarter of them come in bursts: a second push 0-10 minutes after
  another, as when several people push together (the seed's reason for leaving one VM);
- two tenants: deepflow-agent (70%) and deepflow-server (30%).

Run: python examples/autoscale/make_trace.py [OUT.csv] (deterministic: seed 2023).
"""

from __future__ import annotations

import csv
import math
import random
import sys
from pathlib import Path

PIPELINES = 1176
DAYS = 31
FIRST_WEEKDAY = 1  # 2023-08-01 was a Tuesday (Monday = 0)
HOUR_WEIGHTS = [
    0.1, 0.05, 0.02, 0.02, 0.02, 0.02, 0.05, 0.2, 0.6, 1.5, 3.0, 4.0,
    1.5, 2.0, 4.0, 5.0, 5.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.3,
]  # fmt: skip
BURST_SHARE = 0.25


def pipeline_starts(rng: random.Random) -> list[float]:
    """Seconds from August 1st 00:00 at which the pipelines start."""
    day_weights = [1.0 if (FIRST_WEEKDAY + d) % 7 < 5 else 0.15 for d in range(DAYS)]
    starts: list[float] = []
    while len(starts) < PIPELINES:
        if starts and rng.random() < BURST_SHARE:
            starts.append(starts[-1] + rng.uniform(0, 600))
            continue
        day = rng.choices(range(DAYS), day_weights)[0]
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        starts.append(day * 86400 + hour * 3600 + rng.uniform(0, 3600))
    return sorted(min(s, DAYS * 86400 - 1) for s in starts)


def build_minutes(rng: random.Random) -> float:
    """A release build's run time: log-normal around 13 minutes, 5 to 30."""
    return min(30.0, max(5.0, rng.lognormvariate(math.log(13), 0.35)))


def main(out: Path) -> None:
    """Write the trace CSV."""
    rng = random.Random(2023)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["submit_s", "cpu", "memory", "duration_s", "tags", "tenant"])
        for start in pipeline_starts(rng):
            tenant = "deepflow-agent" if rng.random() < 0.7 else "deepflow-server"
            minutes = build_minutes(rng)
            writer.writerow([f"{start:.0f}", 8, "16G", f"{minutes * 60:.0f}", "pool=eci", tenant])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("rust-ci.csv"))
