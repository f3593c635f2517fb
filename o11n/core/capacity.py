"""What elastic capacity is made of: instance types, what the autoscaler asks a provider
to start, and the instances it got. Plain data, shared by the policy, the providers, the
control loop and the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SpotStrategy = Literal["price_limit", "follow_market", "none"]
MAX_CANDIDATES = 5  # ECI's eci-use-specs takes at most five types


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One kind of machine a provider can start, and what it costs per hour."""

    name: str
    cpu: float
    memory: int  # bytes
    gpu: int = 0
    arch: str = "x86_64"
    zones: tuple[str, ...] = ()
    price: float = 0.0  # on demand, per hour, in the catalog's currency
    spot_price: float | None = None  # per hour; None: no spot offer
    tags: tuple[tuple[str, str], ...] = ()  # the tags its worker gets

    def hourly(self, spot: bool) -> float:
        """What an hour of it costs, as spot or on demand."""
        return self.spot_price if spot and self.spot_price is not None else self.price


@dataclass(frozen=True, slots=True)
class Launch:
    """A request to start one worker: candidate types cheapest first (at most five),
    with the spot terms and what its worker must offer."""

    candidates: tuple[InstanceType, ...]
    spot_strategy: SpotStrategy = "follow_market"
    price_limit: float | None = None  # per hour, with spot_strategy price_limit
    spot_duration_s: float = 3600.0  # the protection period: never reclaimed nor stopped
    tags: tuple[tuple[str, str], ...] = ()
    reason: str = ""


@dataclass
class Instance:
    """A started worker machine: which type and zone it got, at what price, since when."""

    id: str
    type: InstanceType
    zone: str
    spot: bool
    hourly_price: float
    started_at: float
    protected_until: float
    worker: str  # the name its o11n worker registers under
    stopped_at: float | None = None
    reclaimed: bool = False
    labels: dict[str, str] = field(default_factory=dict)


def started(
    launch: Launch,
    kind: InstanceType,
    *,
    id: str,
    worker: str,
    zone: str,
    now: float,
    labels: dict[str, str] | None = None,
) -> Instance:
    """The instance a launch got as `kind`: spot when the launch asks for it and the type
    has a spot price, priced accordingly, protected for the launch's spot duration."""
    spot = launch.spot_strategy != "none" and kind.spot_price is not None
    return Instance(
        id=id,
        type=kind,
        zone=zone,
        spot=spot,
        hourly_price=kind.hourly(spot),
        started_at=now,
        protected_until=now + (launch.spot_duration_s if spot else 0.0),
        worker=worker,
        labels=labels or {},
    )


class OutOfStock(Exception):
    """The provider has none of this type (in this zone) right now: try the next one."""
