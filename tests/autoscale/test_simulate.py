"""The simulator: totals against a hand-computed trace, determinism, reclaims, speed."""

from __future__ import annotations

import random
import time
from dataclasses import replace

import pytest

from o11n.autoscale.catalog import Catalog, TraceJob, parse_catalog, parse_trace
from o11n.autoscale.simulate import Baseline, SimConfig, parse_baseline, percentile, simulate
from o11n.core.autoscale import AutoscaleConfig
from o11n.errors import BadRequest

# One type: 2 cpu, 4G, spot 0.36/h = 0.0001 per second.
SMALL = parse_catalog(
    "types: [{name: t.small, cpu: 2, memory: 4G, price: 1.0, spot_price: 0.36, tags: {pool: e}}]"
)
# A at 0 (600 s), B at 100 (300 s), C at 650 (100 s); each takes the whole instance.
HAND = parse_trace(
    "submit_s,cpu,memory,duration_s,tags,tenant\n"
    "0,2,4G,600,pool=e,t\n"
    "100,2,4G,300,pool=e,t\n"
    "650,2,4G,100,pool=e,t\n"
)
CONFIG = AutoscaleConfig(scale_up_after_s=0, idle_ttl_s=60, spot_duration_s=0)
BOOT_30S = SimConfig(start_delay_s=30)


def test_totals_match_the_hand_computed_trace() -> None:
    # t=0    A queued; i-1 launched (billing starts), ready at 30; A runs 30-630 (waited 30)
    # t=100  B queued; i-1 is busy, so i-2 is launched, ready at 130; B runs 130-430 (30)
    # t=430  i-2 idle; at 490 (idle 60 s) it is stopped: billed 490 - 100 = 390 s
    # t=630  i-1 idle; t=650 C arrives and runs on i-1 at once, 650-750 (waited 0)
    # t=750  i-1 idle; at 810 it is stopped: billed 810 - 0 = 810 s
    # cost = (390 + 810) s x 0.0001 = 0.12; waits 0, 30, 30
    report = simulate(HAND, SMALL, CONFIG, BOOT_30S)
    assert report.total_cost == pytest.approx(0.12)
    assert report.instance_hours == pytest.approx(1200 / 3600)
    assert (report.instances_started, report.interruptions, report.jobs) == (2, 0, 3)
    assert (report.wait_p50_s, report.wait_p95_s, report.wait_max_s) == (30, 30, 30)
    assert report.served_by == {"t.small": 1.0} and report.span_s == 810


def test_the_protection_period_keeps_idle_instances_until_it_ends() -> None:
    # As above, but each instance lives until an hour after its launch:
    # i-1 0-3600 (C still reuses it at 650), i-2 100-3700: 7,200 s x 0.0001 = 0.72
    report = simulate(HAND, SMALL, replace(CONFIG, spot_duration_s=3600), BOOT_30S)
    assert report.total_cost == pytest.approx(0.72)
    assert report.span_s == 3700


def test_on_demand_pays_the_on_demand_price() -> None:
    # The same 1,200 instance-seconds at 1.0/h
    report = simulate(HAND, SMALL, replace(CONFIG, spot_strategy="none"), BOOT_30S)
    assert report.total_cost == pytest.approx(1200 / 3600)


def test_the_baseline_is_prorated_by_whole_days_and_queues_on_one_machine() -> None:
    # 304.375 a month = 10 a day (a month is 30.4375 days); the trace covers one day.
    # One 2-cpu machine: A 0-600, B waits until 600 (500 s), C until 900 (250 s).
    baseline = Baseline(2, 4 * 2**30, 304.375, "2c4g")
    report = simulate(HAND, SMALL, CONFIG, BOOT_30S, baseline)
    assert report.baseline_cost == pytest.approx(10.0)
    assert report.cost_ratio == pytest.approx(0.012)
    assert report.baseline is not None
    assert (report.baseline["wait_p50_s"], report.baseline["wait_max_s"]) == (250, 500)


def test_max_workers_makes_jobs_queue() -> None:
    # One instance: A 30-630, B waits for it (630-930: 530 s), C too (930-1030: 280 s);
    # i-1 stops at 1090: 1,090 s x 0.0001 = 0.109
    report = simulate(HAND, SMALL, replace(CONFIG, max_workers=1), BOOT_30S)
    assert report.instances_started == 1
    assert report.wait_max_s == 530 and report.total_cost == pytest.approx(0.109)


def test_jobs_no_type_can_serve_are_reported_unserved() -> None:
    big = [TraceJob(0, 64, 2**30, 10, {}, "t"), *HAND]
    report = simulate(big, SMALL, CONFIG, BOOT_30S)
    assert report.unserved == 1 and report.jobs == 4


def month(n: int, seed: int = 7) -> list[TraceJob]:
    rng = random.Random(seed)
    return sorted(
        (
            TraceJob(rng.uniform(0, 30 * 86400), 2, 2**30, rng.uniform(60, 1800), {}, "t")
            for _ in range(n)
        ),
        key=lambda job: job.submit_s,
    )


def reclaiming(seed: int) -> dict[str, object]:
    sim = SimConfig(start_delay_s=30, reclaim_rate=2.0, seed=seed)
    config = replace(CONFIG, spot_duration_s=300)
    return simulate(month(500), SMALL, config, sim).as_dict()


def test_reclaims_are_deterministic_for_a_seed_and_jobs_still_finish() -> None:
    one, again, other = reclaiming(1), reclaiming(1), reclaiming(2)
    assert one == again
    assert one != other
    assert one["interruptions"] > 0 and one["unserved"] == 0  # type: ignore[operator]
    assert one["instances_started"] > 500 - 30  # type: ignore[operator]


def test_thousands_of_jobs_in_seconds() -> None:
    catalog = Catalog(SMALL.types, "CNY")
    started = time.perf_counter()
    report = simulate(month(5000), catalog, CONFIG, SimConfig(reclaim_rate=0.1, seed=3))
    assert time.perf_counter() - started < 10
    assert report.jobs == 5000 and report.unserved == 0


def test_baseline_strings() -> None:
    assert parse_baseline("32c64g:2600") == Baseline(32, 64 * 2**30, 2600, "32c64g")
    assert parse_baseline("8C16GB:900.5").memory == 16 * 2**30
    with pytest.raises(BadRequest, match="32c64g:2600"):
        parse_baseline("32 cores")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95), percentile([], 50)) == (10, 19, 0)
