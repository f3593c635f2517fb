"""Host ports of one agent: a range handed out to tasks, never one port to two owners."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from o11n.errors import BadRequest, Conflict

DEFAULT_LOW = 31000
DEFAULT_HIGH = 32000
LOWEST_PORT = 1
HIGHEST_PORT = 65535

_RANGE = re.compile(r"\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?")


def parse_range(text: str) -> tuple[int, int]:
    """`"31000-32000"` as `(31000, 32000)`, both ends included; a lone port is a range of one."""
    found = _RANGE.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise BadRequest(f"port range {text!r}: expected low-high, e.g. 31000-32000")
    low = int(found.group(1))
    high = int(found.group(2)) if found.group(2) is not None else low
    _check_range(low, high)
    return low, high


def format_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    """Ranges as `"31000-31005,31007,31009-32000"`; empty when there are none."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def _check_range(low: int, high: int) -> None:
    if not LOWEST_PORT <= low <= HIGHEST_PORT or not LOWEST_PORT <= high <= HIGHEST_PORT:
        raise BadRequest(f"port range {low}-{high}: ports are {LOWEST_PORT}-{HIGHEST_PORT}")
    if low > high:
        raise BadRequest(f"port range {low}-{high}: the low end is above the high end")


class PortPool:
    """The ports low..high (inclusive) of one agent, each free or held by one owner (a task)."""

    def __init__(
        self,
        low: int = DEFAULT_LOW,
        high: int = DEFAULT_HIGH,
        rng: random.Random | None = None,
    ) -> None:
        _check_range(low, high)
        self.low, self.high = low, high
        self._rng = rng or random.Random()
        self._owner: dict[int, str] = {}
        self._ports: dict[str, set[int]] = {}

    @classmethod
    def from_range(cls, text: str, rng: random.Random | None = None) -> PortPool:
        """A pool over a range written `"31000-32000"`."""
        low, high = parse_range(text)
        return cls(low, high, rng)

    @property
    def size(self) -> int:
        """How many ports the range holds."""
        return self.high - self.low + 1

    def free_count(self) -> int:
        """How many ports nobody holds."""
        return self.size - len(self._owner)

    def owner_of(self, port: int) -> str | None:
        """Who holds a port, or None if it is free (or outside the range)."""
        return self._owner.get(port)

    def ports_of(self, owner: str) -> list[int]:
        """The ports an owner holds, in order."""
        return sorted(self._ports.get(owner, ()))

    def allocate(self, n: int, owner: str) -> list[int]:
        """Take `n` free ports at random for `owner`; Conflict, taking none, if fewer are free."""
        if n < 0:
            raise BadRequest(f"cannot allocate {n} ports")
        free = self.free_count()
        if n > free:
            raise Conflict(
                f"{owner} needs {n} ports but only {free} of {self.low}-{self.high} are free"
            )
        chosen = self._pick(n)
        for port in chosen:
            self._take(port, owner)
        return chosen

    def reserve(self, port: int, owner: str) -> None:
        """Take one given port (a fixed host port, or state rebuilt after a restart).

        Taking a port the owner already holds is a no-op; Conflict if another owner
        holds it or it is outside the range.
        """
        if not self.low <= port <= self.high:
            raise Conflict(f"port {port} is outside this agent's range {self.low}-{self.high}")
        holder = self._owner.get(port)
        if holder is not None and holder != owner:
            raise Conflict(f"port {port} is already held by {holder}")
        self._take(port, owner)

    def release(self, owner: str) -> list[int]:
        """Free every port of an owner; returns them, in order."""
        ports = self._ports.pop(owner, set())
        for port in ports:
            del self._owner[port]
        return sorted(ports)

    def free_ranges(self) -> list[tuple[int, int]]:
        """The free ports as sorted inclusive ranges."""
        ranges = []
        start = self.low
        for port in sorted(self._owner):
            if port > start:
                ranges.append((start, port - 1))
            start = port + 1
        if start <= self.high:
            ranges.append((start, self.high))
        return ranges

    def _take(self, port: int, owner: str) -> None:
        self._owner[port] = owner
        self._ports.setdefault(owner, set()).add(port)

    def _pick(self, n: int) -> list[int]:
        """`n` distinct free ports, at random.

        While at least half the range stays free, draw ports and skip taken ones
        (about two draws a port); otherwise sample from the list of free ports.
        """
        if 2 * (len(self._owner) + n) <= self.size:
            chosen: dict[int, None] = {}  # keeps draw order, so a seeded rng repeats
            while len(chosen) < n:
                port = self._rng.randint(self.low, self.high)
                if port not in self._owner:
                    chosen[port] = None
            return list(chosen)
        free = [p for p in range(self.low, self.high + 1) if p not in self._owner]
        return self._rng.sample(free, n)
