"""A clock for tests that set the time themselves (leases, eviction, back-off)."""

from __future__ import annotations


class Clock:
    """Callable like time.time; `now` moves only when a test moves it."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now
