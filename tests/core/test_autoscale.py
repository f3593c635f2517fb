"""The autoscaler's policy on a fake clock: candidates, spot terms, caps, budget, stops."""

from __future__ import annotations

from dataclasses import replace

import pytest

from o11n.core.autoscale import (
    AutoscaleConfig,
    Autoscaler,
    Decisions,
    Demand,
    Running,
    launch_price,
)
from o11n.core.capacity import Instance, InstanceType, Launch, OutOfStock
from o11n.errors import BadRequest
from tests.clock import Clock

G = 2**30
ZONES = ("zone-a", "zone-b")


def kind(name: str, cpu: float, spot: float, price: float = 1.0, **extra: object) -> InstanceType:
    fields: dict[str, object] = {"memory": int(cpu * 2 * G), "zones": ZONES, "tags": ()}
    fields.update(extra)
    return InstanceType(name, cpu, price=price, spot_price=spot, **fields)  # type: ignore[arg-type]


POOL = (("pool", "eci"),)
TYPES = [
    kind("c6.2xlarge", 8, 0.27, 1.36, tags=POOL),
    kind("c5.2xlarge", 8, 0.248, 2.48, tags=POOL),
    kind("c7.3xlarge", 12, 0.48, 2.4, tags=POOL),
    kind("g6.2xlarge", 8, 0.40, 2.0, tags=POOL, memory=32 * G),
    kind("c6e.2xlarge", 8, 0.29, 1.46, tags=POOL),
    kind("g6.4xlarge", 16, 0.80, 4.0, tags=POOL),
    kind("c5.large", 2, 0.062, 0.62, tags=POOL),
    kind("arm.2xlarge", 8, 0.10, 0.9, tags=POOL, arch="aarch64"),
]


def names(launch: Launch) -> list[str]:
    return [t.name for t in launch.candidates]


def demand(since: float, cpu: float = 8, memory: int = 16 * G, **tags: str) -> Demand:
    return Demand(cpu, memory, since, tags=tags or {"pool": "eci"}, key="job 1")


def running(
    name: str,
    type_: InstanceType,
    started: float,
    idle_since: float | None = None,
    protected_for: float = 3600.0,
    booting: bool = False,
) -> Running:
    instance = Instance(
        id=name,
        type=type_,
        zone="zone-a",
        spot=True,
        hourly_price=type_.spot_price or 0.0,
        started_at=started,
        protected_until=started + protected_for,
        worker=f"w-{name}",
    )
    return Running(instance, idle_since, booting)


@pytest.fixture
def clock() -> Clock:
    return Clock(10_000.0)


def decide(
    policy: Autoscaler,
    clock: Clock,
    demands: list[Demand],
    live: list[Running] | None = None,
    pending: list[Launch] | None = None,
    types: list[InstanceType] | None = None,
) -> Decisions:
    return policy.decide(demands, live or [], types or TYPES, pending or [], clock())


def test_a_demand_younger_than_scale_up_after_is_ignored(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=30))
    young = demand(clock() - 29)
    assert decide(policy, clock, [young]) == Decisions()
    clock.now += 1
    assert len(decide(policy, clock, [young]).launches) == 1


def test_candidates_fit_tags_arch_and_resources_cheapest_spot_first(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0))
    (launch,) = decide(policy, clock, [demand(clock(), arch="x86_64", pool="eci")]).launches
    # c5.large is too small, arm.2xlarge has the wrong arch; g6.4xlarge is the sixth: cut.
    assert names(launch) == ["c5.2xlarge", "c6.2xlarge", "c6e.2xlarge", "g6.2xlarge", "c7.3xlarge"]
    assert launch.spot_strategy == "follow_market" and launch.spot_duration_s == 3600
    assert launch.tags == (("arch", "x86_64"), ("pool", "eci"))
    assert "job 1 waiting 0s for cpu=8 memory=16G" in launch.reason
    assert "cheapest c5.2xlarge at 0.248/h" in launch.reason


def test_memory_and_tags_narrow_the_candidates(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0))
    (launch,) = decide(policy, clock, [demand(clock(), memory=30 * G)]).launches
    assert names(launch) == ["g6.2xlarge", "g6.4xlarge"]
    (arm,) = decide(policy, clock, [demand(clock(), arch="aarch64")]).launches
    assert names(arm) == ["arm.2xlarge"]


def test_on_demand_orders_by_the_on_demand_price(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0, spot_strategy="none"))
    (launch,) = decide(policy, clock, [demand(clock(), arch="x86_64")]).launches
    assert names(launch)[:3] == ["c6.2xlarge", "c6e.2xlarge", "g6.2xlarge"]
    assert launch.spot_strategy == "none" and "on demand" in launch.reason


def test_price_limit_leaves_out_dearer_spot_types(clock: Clock) -> None:
    config = AutoscaleConfig(scale_up_after_s=0, spot_strategy="price_limit", price_limit=0.28)
    (launch,) = decide(Autoscaler(config), clock, [demand(clock(), arch="x86_64")]).launches
    assert names(launch) == ["c5.2xlarge", "c6.2xlarge"]
    assert launch.price_limit == 0.28 and launch.spot_strategy == "price_limit"


def test_a_price_limit_below_every_type_holds_the_demand(clock: Clock) -> None:
    config = AutoscaleConfig(scale_up_after_s=0, spot_strategy="price_limit", price_limit=0.2)
    decisions = decide(Autoscaler(config), clock, [demand(clock(), arch="x86_64")])
    assert decisions.launches == []
    assert "above the price_limit 0.2/h" in decisions.held[0].reason


def test_no_type_fits_holds_the_demand(clock: Clock) -> None:
    decisions = decide(Autoscaler(AutoscaleConfig()), clock, [demand(0, cpu=64)])
    assert decisions.launches == [] and "no instance type" in decisions.held[0].reason


def test_one_launch_per_demand_not_covered_by_pending_or_booting(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0))
    three = [demand(clock() - i) for i in range(3)]
    assert len(decide(policy, clock, three).launches) == 3
    pending = decide(policy, clock, three[:1]).launches
    booting = running("i-1", TYPES[0], clock(), booting=True)
    assert len(decide(policy, clock, three, [booting], pending).launches) == 1
    # a pending launch only covers demand every one of its candidates can serve
    small = decide(policy, clock, [demand(clock(), cpu=2, memory=G)]).launches
    assert len(decide(policy, clock, three[:1], pending=small).launches) == 1


def test_fallback_walks_candidates_then_cooldown_skips_out_of_stock(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0, out_of_stock_cooldown_s=300))
    (launch,) = decide(policy, clock, [demand(clock(), arch="x86_64")]).launches
    stock = {("c5.2xlarge", "zone-a"), ("c5.2xlarge", "zone-b"), ("c6.2xlarge", "zone-a")}

    def start(launch: Launch) -> tuple[str, str]:  # what a provider does with a Launch
        for type_ in launch.candidates:
            for zone in type_.zones:
                if (type_.name, zone) not in stock:
                    return type_.name, zone
                policy.note_out_of_stock(type_.name, zone, clock())
        raise OutOfStock("none of the candidates")

    assert start(launch) == ("c6.2xlarge", "zone-b")
    (again,) = decide(policy, clock, [demand(clock(), arch="x86_64")]).launches
    assert names(again)[:2] == ["c6.2xlarge", "c6e.2xlarge"]  # c5 out in both zones
    assert again.candidates[0].zones == ("zone-b",)
    clock.now += 300
    (cooled,) = decide(policy, clock, [demand(clock(), arch="x86_64")]).launches
    assert names(cooled)[0] == "c5.2xlarge" and cooled.candidates[1].zones == ZONES


def test_a_type_out_of_stock_everywhere_is_skipped(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0))
    policy.note_out_of_stock("arm.2xlarge", None, clock())
    decisions = decide(policy, clock, [demand(clock(), arch="aarch64")])
    assert decisions.launches == [] and "in stock" in decisions.held[0].reason


def test_max_workers_counts_live_pending_and_new(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0, max_workers=3))
    live = [running("i-1", TYPES[0], clock())]
    pending = decide(policy, clock, [demand(clock(), cpu=2, memory=G)]).launches
    decisions = decide(policy, clock, [demand(clock() - i) for i in range(3)], live, pending)
    assert len(decisions.launches) == 1
    assert [h.reason for h in decisions.held] == ["max_workers 3 reached"] * 2


def test_budget_trims_candidates_then_holds(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0, budget_per_hour=1.0))
    live = [running("i-1", TYPES[0], clock())]  # 0.27/h
    three = [demand(clock() - i, arch="x86_64") for i in range(3)]
    decisions = decide(policy, clock, three, live)
    first, second = decisions.launches
    # 0.27/h live leaves 0.73/h: all five candidates fit; the dearest (0.48) is committed
    assert launch_price(first) == 0.48 and len(first.candidates) == 5
    # 0.75 committed: only types at <= 0.25/h are left for the second
    assert names(second) == ["c5.2xlarge"]
    assert "budget 1/h" in decisions.held[0].reason


def test_pending_launches_count_against_the_budget(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0, budget_per_hour=0.5))
    pending = decide(policy, clock, [demand(clock(), arch="x86_64")]).launches
    assert launch_price(pending[0]) == 0.48
    decisions = decide(policy, clock, [demand(clock(), arch="x86_64")] * 2, pending=pending)
    assert decisions.launches == [] and decisions.held


def test_idle_past_ttl_is_stopped_but_never_inside_protection(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(idle_ttl_s=60))
    start = clock()
    idle = running("i-1", TYPES[0], start, idle_since=start + 600)
    clock.now = start + 3000  # idle 2,400 s, but protected until start + 3,600
    assert decide(policy, clock, [], [idle]).stops == []
    clock.now = start + 3600
    (stop,) = decide(policy, clock, [], [idle]).stops
    assert stop.instance.id == "i-1" and stop.reason == "idle 3000s >= idle_ttl 60s"


def test_busy_booting_and_recently_idle_workers_stay(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(idle_ttl_s=60))
    live = [
        running("busy", TYPES[0], 0, protected_for=0),
        running("boot", TYPES[0], 0, idle_since=0, protected_for=0, booting=True),
        running("fresh", TYPES[0], 0, idle_since=clock() - 59, protected_for=0),
    ]
    assert decide(policy, clock, [], live).stops == []


def test_scale_to_zero_and_min_workers(clock: Clock) -> None:
    live = [running(f"i-{i}", TYPES[0], 0, idle_since=i, protected_for=0) for i in range(3)]
    to_zero = decide(Autoscaler(AutoscaleConfig(idle_ttl_s=60)), clock, [], live)
    assert [s.instance.id for s in to_zero.stops] == ["i-0", "i-1", "i-2"]
    keep_one = decide(Autoscaler(AutoscaleConfig(idle_ttl_s=60, min_workers=1)), clock, [], live)
    assert [s.instance.id for s in keep_one.stops] == ["i-0", "i-1"]  # the longest idle go


def test_min_workers_are_started_on_the_cheapest_type(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(min_workers=2))
    live = [running("i-1", TYPES[0], clock())]
    (launch,) = decide(policy, clock, [], live).launches
    assert names(launch)[0] == "c5.large" and launch.reason.startswith("min_workers 2")


def test_stopped_instances_are_not_counted(clock: Clock) -> None:
    policy = Autoscaler(AutoscaleConfig(scale_up_after_s=0, max_workers=1))
    gone = running("i-1", TYPES[0], 0)
    gone = replace(gone, instance=replace(gone.instance, stopped_at=5.0))
    assert len(decide(policy, clock, [demand(clock())], [gone]).launches) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spot_strategy": "price_limit"}, "needs a price_limit"),
        ({"spot_strategy": "cheap"}, "unknown spot strategy"),
        ({"min_workers": 3, "max_workers": 2}, "min_workers <= max_workers"),
        ({"idle_ttl_s": -1}, "must not be negative"),
    ],
)
def test_bad_configs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        AutoscaleConfig(**fields)  # type: ignore[arg-type]
