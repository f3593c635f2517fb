"""A registered worker (an agent of the pool) as the scheduler sees it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from o11n.core.constraints import AgentView
from o11n.core.matching import ResourceKey, Tags, as_tags
from o11n.core.ports import PortPool
from o11n.errors import Forbidden
from o11n.scheduler.auth import WORKER, Principal


def attribute_text(value: str | float) -> str:
    """An attribute as a tag value: 24.0 -> "24"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(slots=True)
class AgentSettings:
    """What the platform team set on an agent, and the worker token its name is bound to
    (None: registered only with the admin token so far): kept across its registrations."""

    attributes: dict[str, str | float] = field(default_factory=dict)
    disabled: bool = False
    token_hash: str | None = None


def binding(by: Principal | None, name: str, bound: str | None) -> str | None:
    """The token hash a worker's name is bound to once `by` registers it: the admin (or the
    scheduler itself, None) leaves the binding as it is; a worker token takes an unbound
    name, and no other worker token's (Forbidden)."""
    if by is None or by.is_admin:
        return bound
    by.require(WORKER)
    if bound not in (None, by.key):
        raise Forbidden(f"worker name {name!r} is bound to another worker token")
    return by.key


@dataclass(slots=True)
class WorkerState:
    """A registered worker: what it offers, what the platform team set on it, its state."""

    name: str
    own_tags: dict[str, str]
    capacity: ResourceKey
    registered_at: float
    last_seen: float
    address: str = "127.0.0.1"
    ports: PortPool = field(default_factory=PortPool)
    disk: int = 0
    attributes: dict[str, str | float] = field(default_factory=dict)
    disabled: bool = False
    draining: bool = False
    tags: Tags = frozenset()  # what jobs match: its tags, attributes, hostname and ip
    reserved: ResourceKey = (0.0, 0, 0)  # taken off the index, not yet committed
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # new work: ends a lease poll
    control: asyncio.Event = field(default_factory=asyncio.Event)  # ends a heartbeat poll

    def __post_init__(self) -> None:
        self.refresh_tags()

    def implicit(self) -> dict[str, str]:
        """The attributes every agent has: its name and its address."""
        return {"hostname": self.name, "ip": self.address}

    def refresh_tags(self) -> None:
        """Recompute what jobs match (after the attributes changed)."""
        merged = {k: attribute_text(v) for k, v in self.attributes.items()}
        self.tags = as_tags({**self.own_tags, **merged, **self.implicit()})

    def view(self) -> AgentView:
        """The agent as placement constraints see it."""
        return AgentView(self.name, {**self.own_tags, **self.attributes, **self.implicit()})
