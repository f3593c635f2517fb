"""The autoscaler's policy: which workers to start for demand no worker can serve, which
idle ones to stop, and why. Pure: every input, the clock's value among them, is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from o11n.core.capacity import MAX_CANDIDATES, Instance, InstanceType, Launch, SpotStrategy
from o11n.core.units import format_size
from o11n.errors import BadRequest

Tags = tuple[tuple[str, str], ...]
SPOT_STRATEGIES: tuple[SpotStrategy, ...] = ("price_limit", "follow_market", "none")


@dataclass(frozen=True, slots=True)
class AutoscaleConfig:
    """How eagerly to scale, how far, and on what terms (seconds, and prices per hour)."""

    scale_up_after_s: float = 10.0  # a demand must wait this long before it starts a worker
    idle_ttl_s: float = 300.0  # an idle worker is stopped after this long
    min_workers: int = 0  # 0: scale to zero
    max_workers: int = 20
    budget_per_hour: float | None = None  # running instances + pending + new, at most
    spot_strategy: SpotStrategy = "follow_market"
    price_limit: float | None = None  # per hour, with spot_strategy price_limit
    spot_duration_s: float = 3600.0  # the protection period
    out_of_stock_cooldown_s: float = 300.0  # how long a type/zone out of stock is skipped

    def __post_init__(self) -> None:
        if self.spot_strategy not in SPOT_STRATEGIES:
            raise BadRequest(
                f"unknown spot strategy {self.spot_strategy!r}: use {', '.join(SPOT_STRATEGIES)}"
            )
        if self.spot_strategy == "price_limit" and self.price_limit is None:
            raise BadRequest("spot strategy price_limit needs a price_limit")
        if not 0 <= self.min_workers <= self.max_workers:
            raise BadRequest(
                f"need 0 <= min_workers <= max_workers, got {self.min_workers} and "
                f"{self.max_workers}"
            )
        for name in ("scale_up_after_s", "idle_ttl_s", "spot_duration_s", "budget_per_hour"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise BadRequest(f"{name} must not be negative, got {value}")


@dataclass(frozen=True, slots=True)
class Demand:
    """A queued job (or a group of like ones) that no existing worker can serve."""

    cpu: float
    memory: int  # bytes
    waiting_since: float
    gpu: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    key: str = ""  # who waits, e.g. "job 42": used in reasons

    def describe(self) -> str:
        """What it needs, for reasons: `cpu=8 memory=16G tags arch=x86_64`."""
        text = f"cpu={self.cpu:g} memory={format_size(self.memory)}"
        if self.gpu:
            text += f" gpu={self.gpu}"
        if self.tags:
            text += " tags " + ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return text


@dataclass(frozen=True, slots=True)
class Running:
    """A live instance as the policy sees it: is its worker idle (since when), or booting."""

    instance: Instance
    idle_since: float | None = None  # None: its worker is busy (or booting)
    booting: bool = False  # started, but its worker has not registered yet


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop this instance, and why."""

    instance: Instance
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    """A demand the policy could not start a worker for, and why (a cap, a price, ...)."""

    demand: Demand
    reason: str


@dataclass
class Decisions:
    """What one round of the policy decided."""

    launches: list[Launch] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


def type_tags(kind: InstanceType) -> dict[str, str]:
    """The tags a worker of this type matches on: the type's tags plus `arch`."""
    return {"arch": kind.arch, **dict(kind.tags)}


def serves(kind: InstanceType, demand: Demand) -> bool:
    """Does a worker of this type have the demand's tags and resources?"""
    if kind.cpu < demand.cpu or kind.memory < demand.memory or kind.gpu < demand.gpu:
        return False
    offered = type_tags(kind)
    return all(offered.get(k) == v for k, v in demand.tags.items())


def strategy_price(kind: InstanceType, strategy: SpotStrategy) -> float | None:
    """The hourly price paid for this type under a spot strategy; None: no spot offer."""
    if strategy == "none":
        return kind.price
    return kind.spot_price


def launch_price(launch: Launch) -> float:
    """The most a launch can cost per hour: its dearest candidate (budgets count this)."""
    prices = (strategy_price(t, launch.spot_strategy) for t in launch.candidates)
    return max((p for p in prices if p is not None), default=0.0)


class Autoscaler:
    """The policy, with its one piece of memory: which types/zones were out of stock."""

    def __init__(self, config: AutoscaleConfig) -> None:
        self.config = config
        self._out_of_stock: dict[tuple[str, str | None], float] = {}

    def note_out_of_stock(self, type_name: str, zone: str | None, now: float) -> None:
        """Skip this type in this zone (zone None: in every zone) for the cool-down."""
        self._out_of_stock[(type_name, zone)] = now + self.config.out_of_stock_cooldown_s

    def decide(
        self,
        demands: Iterable[Demand],
        instances: Sequence[Running],
        types: Sequence[InstanceType],
        pending: Sequence[Launch],
        now: float,
    ) -> Decisions:
        """Launches for demand that has waited `scale_up_after_s` and is not covered by a
        pending launch or a booting instance; stops for workers idle past `idle_ttl_s`."""
        live = [r for r in instances if r.instance.stopped_at is None]
        self._forget_expired(now)
        round_ = _Round(self.config, now, live, pending, self._in_stock(types, now))
        for demand in _uncovered(self._due(demands, now), live, pending):
            round_.launch_for(demand)
        round_.fill_min_workers()
        round_.decisions.stops = self._stops(live, now)
        return round_.decisions

    def _due(self, demands: Iterable[Demand], now: float) -> list[Demand]:
        wait = self.config.scale_up_after_s
        return sorted(
            (d for d in demands if now - d.waiting_since >= wait), key=lambda d: d.waiting_since
        )

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, until in self._out_of_stock.items() if until <= now]:
            del self._out_of_stock[key]

    def _in_stock(self, types: Sequence[InstanceType], now: float) -> list[InstanceType]:
        """The types not in cool-down, each with only the zones not in cool-down."""
        blocked = self._out_of_stock
        kept = []
        for kind in types:
            if (kind.name, None) in blocked:
                continue
            zones = tuple(z for z in kind.zones if (kind.name, z) not in blocked)
            if kind.zones and not zones:
                continue
            kept.append(kind if zones == kind.zones else replace(kind, zones=zones))
        return kept

    def _stops(self, live: Sequence[Running], now: float) -> list[Stop]:
        ttl = self.config.idle_ttl_s
        idle = sorted(
            (
                (r.idle_since, r.instance.id, r)
                for r in live
                if r.idle_since is not None and not r.booting and now - r.idle_since >= ttl
            ),
            key=lambda entry: entry[:2],
        )
        stops: list[Stop] = []
        room = len(live) - self.config.min_workers
        for idle_since, _, running in idle:
            if len(stops) >= room:
                break
            if now < running.instance.protected_until:
                continue  # inside its protection period: kept (and paid for)
            idle_for = now - idle_since
            stops.append(Stop(running.instance, f"idle {idle_for:.0f}s >= idle_ttl {ttl:g}s"))
        return stops


def _uncovered(
    demands: list[Demand], live: Sequence[Running], pending: Sequence[Launch]
) -> list[Demand]:
    """The demands left once each pending launch and booting instance covers one it fits."""
    covers: list[tuple[InstanceType, ...]] = [launch.candidates for launch in pending]
    covers += [(r.instance.type,) for r in live if r.booting]
    left = []
    for demand in demands:
        found = next(
            (i for i, kinds in enumerate(covers) if all(serves(k, demand) for k in kinds)), None
        )
        if found is None:
            left.append(demand)
        else:
            del covers[found]
    return left


class _Round:
    """One decide() call's running totals: workers counted, money committed per hour."""

    def __init__(
        self,
        config: AutoscaleConfig,
        now: float,
        live: Sequence[Running],
        pending: Sequence[Launch],
        types: list[InstanceType],
    ) -> None:
        self.config, self.now, self.types = config, now, types
        self.workers = len(live) + len(pending)
        self.live = len(live)
        self.per_hour = sum(r.instance.hourly_price for r in live)
        self.per_hour += sum(launch_price(p) for p in pending)
        self.decisions = Decisions()

    def launch_for(self, demand: Demand) -> None:
        """Launch a worker for a demand, or record why not."""
        picked = self._candidates(demand)
        if isinstance(picked, str):
            self.decisions.held.append(Held(demand, picked))
            return
        waited = self.now - demand.waiting_since
        who = f"{demand.key} " if demand.key else ""
        reason = f"{who}waiting {waited:.0f}s for {demand.describe()}"
        self._add(picked, tuple(sorted(demand.tags.items())), reason)

    def fill_min_workers(self) -> None:
        """Start the cheapest type until min_workers are live or pending."""
        want = self.config.min_workers
        while self.workers < want:
            picked = self._candidates(Demand(0, 0, self.now))
            if isinstance(picked, str):
                return
            self._add(picked, (), f"min_workers {want}: {self.workers} live or starting")

    def _add(
        self, kinds: tuple[InstanceType, ...], tags: tuple[tuple[str, str], ...], why: str
    ) -> None:
        config = self.config
        price = strategy_price(kinds[0], config.spot_strategy)
        terms = "on demand" if config.spot_strategy == "none" else f"spot {config.spot_strategy}"
        launch = Launch(
            candidates=kinds,
            spot_strategy=config.spot_strategy,
            price_limit=config.price_limit if config.spot_strategy == "price_limit" else None,
            spot_duration_s=config.spot_duration_s,
            tags=tags,
            reason=f"{why}: {_candidates_count(len(kinds))}, "
            f"cheapest {kinds[0].name} at {price:g}/h {terms}",
        )
        self.decisions.launches.append(launch)
        self.workers += 1
        self.per_hour += launch_price(launch)

    def _candidates(self, demand: Demand) -> tuple[InstanceType, ...] | str:
        """Up to five types for a demand, cheapest first; a string says why there are none."""
        config = self.config
        if self.workers >= config.max_workers:
            return f"max_workers {config.max_workers} reached"
        fitting = [t for t in self.types if serves(t, demand)]
        if not fitting:
            return f"no instance type in stock offers {demand.describe()}"
        priced = [(p, t) for t in fitting if (p := self._price(t)) is not None]
        if not priced:
            return _no_price_reason(config)
        budget = config.budget_per_hour
        if budget is not None:
            priced = [(p, t) for p, t in priced if self.per_hour + p <= budget + 1e-9]
            if not priced:
                return f"budget {budget:g}/h: {self.per_hour:g}/h committed already"
        priced.sort(key=lambda pt: (pt[0], pt[1].name))
        return tuple(t for _, t in priced[:MAX_CANDIDATES])

    def _price(self, kind: InstanceType) -> float | None:
        price = strategy_price(kind, self.config.spot_strategy)
        limit = self.config.price_limit
        if price is not None and self.config.spot_strategy == "price_limit" and limit is not None:
            return price if price <= limit else None
        return price


def _candidates_count(count: int) -> str:
    return "1 candidate" if count == 1 else f"{count} candidates"


def _no_price_reason(config: AutoscaleConfig) -> str:
    if config.spot_strategy == "price_limit":
        return f"every fitting type's spot price is above the price_limit {config.price_limit:g}/h"
    return "no fitting type has a spot price"
