"""Weighted fair share between tenants, by virtual time (start-time fair queuing).

Each dispatch charges the tenant 1/weight of virtual time; the tenant with the
least virtual time goes first. A tenant that comes back after being idle starts
at the smallest virtual time of the busy tenants, so it gets its share from now
on but no credit for the time it had no work (otherwise a returning tenant would
starve everyone until it had "caught up").
"""

from __future__ import annotations

DEFAULT_WEIGHT = 1.0


class FairShare:
    """Virtual time per tenant; `order()` is the order in which tenants are served."""

    def __init__(self) -> None:
        self._weights: dict[str, float] = {}
        self._vtime: dict[str, float] = {}
        self._active: set[str] = set()

    def set_weight(self, tenant: str, weight: float) -> None:
        """Give `tenant` a share proportional to `weight` (> 0)."""
        if weight <= 0:
            raise ValueError("weight must be positive")
        self._weights[tenant] = weight

    def weight(self, tenant: str) -> float:
        """The tenant's weight, 1 unless set."""
        return self._weights.get(tenant, DEFAULT_WEIGHT)

    def activate(self, tenant: str) -> None:
        """The tenant has work again: it joins at the busy tenants' virtual time."""
        if tenant in self._active:
            return
        floor = min((self._vtime[t] for t in self._active), default=None)
        current = self._vtime.get(tenant, 0.0)
        self._vtime[tenant] = current if floor is None else max(current, floor)
        self._active.add(tenant)

    def deactivate(self, tenant: str) -> None:
        """The tenant has no queued work left."""
        self._active.discard(tenant)

    def charge(self, tenant: str, cost: float = 1.0) -> None:
        """Record that `tenant` received a dispatch."""
        self._vtime[tenant] = self._vtime.get(tenant, 0.0) + cost / self.weight(tenant)

    def order(self) -> list[str]:
        """Tenants with work, the one furthest below its share first."""
        return sorted(self._active, key=lambda t: (self._vtime[t], t))

    def vtime(self, tenant: str) -> float:
        """The tenant's virtual time (dispatches divided by weight, since joining)."""
        return self._vtime.get(tenant, 0.0)
