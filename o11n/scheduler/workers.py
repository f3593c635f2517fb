"""A registered worker as the scheduler sees it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from o11n.core.matching import ResourceKey, Tags


@dataclass(slots=True)
class WorkerState:
    """A registered worker as the scheduler sees it."""

    name: str
    tags: Tags
    capacity: ResourceKey
    registered_at: float
    last_seen: float
    draining: bool = False
    reserved: ResourceKey = (0.0, 0, 0)  # taken off the index, not yet committed
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # new work: ends a lease poll
    control: asyncio.Event = field(default_factory=asyncio.Event)  # ends a heartbeat poll
