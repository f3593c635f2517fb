"""What a capacity provider does: start a worker machine for a Launch, stop one, say
which of its instances the cloud took back, and which still run from an earlier run of
the scheduler."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from o11n.core.capacity import Instance, InstanceType, Launch


class Provider(Protocol):
    """Starts and stops worker machines (local processes, Kubernetes Pods, ...)."""

    async def start(self, launch: Launch, worker: str) -> Instance:
        """Start a machine whose o11n worker registers as `worker`, taking the first of
        `launch.candidates` (and zone) that is in stock; OutOfStock when none is."""
        ...

    async def stop(self, instance: Instance) -> None:
        """Stop a machine and its worker (draining is the caller's business)."""
        ...

    async def reclaimed(self) -> list[str]:
        """The ids of instances taken back (spot interruption) since the last call."""
        ...

    async def existing(self, types: Sequence[InstanceType]) -> list[Instance]:
        """The machines it runs that an earlier run of the scheduler started (to adopt),
        their types looked up in `types`."""
        ...
