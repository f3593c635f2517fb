"""Host port pools: random allocation, reservations, release, and the free ranges shown."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from o11n.core.ports import PortPool, format_ranges, parse_range
from o11n.errors import BadRequest, Conflict


def pool(low: int = 31000, high: int = 32000, seed: int = 1) -> PortPool:
    return PortPool(low, high, random.Random(seed))


def test_the_default_range_is_31000_to_32000_inclusive() -> None:
    ports = PortPool()
    assert (ports.low, ports.high) == (31000, 32000)
    assert ports.free_count() == 1001
    assert ports.free_ranges() == [(31000, 32000)]


def test_allocate_gives_distinct_ports_in_range_to_the_owner() -> None:
    ports = pool()
    taken = ports.allocate(10, "task-1")
    assert len(set(taken)) == 10
    assert all(31000 <= p <= 32000 for p in taken)
    assert all(ports.owner_of(p) == "task-1" for p in taken)
    assert ports.ports_of("task-1") == sorted(taken)
    assert ports.free_count() == 1001 - 10


def test_allocate_is_random_but_repeatable_with_a_seeded_rng() -> None:
    first = pool(seed=7).allocate(5, "a")
    assert pool(seed=7).allocate(5, "a") == first
    draws = {tuple(pool(seed=s).allocate(5, "a")) for s in range(10)}
    assert len(draws) > 1


def test_allocate_zero_ports_takes_nothing() -> None:
    ports = pool()
    assert ports.allocate(0, "a") == []
    assert ports.free_count() == 1001


def test_allocate_a_negative_count_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        pool().allocate(-1, "a")


def test_allocate_can_take_every_port_of_a_small_range() -> None:
    ports = pool(100, 109)
    assert sorted(ports.allocate(10, "a")) == list(range(100, 110))
    assert ports.free_count() == 0
    assert ports.free_ranges() == []


def test_allocate_when_exhausted_is_a_conflict_and_takes_nothing() -> None:
    ports = pool(100, 109)
    first = ports.allocate(7, "a")
    with pytest.raises(Conflict, match="needs 4 ports but only 3"):
        ports.allocate(4, "b")
    assert ports.ports_of("b") == []
    assert ports.free_count() == 3
    assert ports.ports_of("a") == sorted(first)
    assert len(ports.allocate(3, "b")) == 3


def test_allocate_never_hands_out_a_taken_port() -> None:
    ports = pool(100, 119)
    for port in range(100, 119, 2):
        ports.reserve(port, "fixed")
    taken = ports.allocate(10, "a")
    assert sorted(taken) == list(range(101, 120, 2))


def test_reserve_takes_a_given_port() -> None:
    ports = pool()
    ports.reserve(31500, "a")
    assert ports.owner_of(31500) == "a"
    ports.reserve(31500, "a")  # again, by the same owner: nothing changes
    assert ports.free_count() == 1000


def test_reserve_a_port_of_another_owner_is_a_conflict() -> None:
    ports = pool()
    ports.reserve(31500, "a")
    with pytest.raises(Conflict, match="already held by a"):
        ports.reserve(31500, "b")
    assert ports.owner_of(31500) == "a"


@pytest.mark.parametrize("port", [30999, 32001, 0, 80])
def test_reserve_outside_the_range_is_a_conflict(port: int) -> None:
    ports = pool()
    with pytest.raises(Conflict, match="outside"):
        ports.reserve(port, "a")
    assert ports.free_count() == 1001


def test_release_frees_every_port_of_an_owner_only() -> None:
    ports = pool()
    mine = ports.allocate(3, "a")
    ports.reserve(31000, "a")
    theirs = ports.allocate(2, "b")
    assert ports.release("a") == sorted([*mine, 31000])
    assert all(ports.owner_of(p) is None for p in [*mine, 31000])
    assert ports.ports_of("b") == sorted(theirs)
    assert ports.free_count() == 1001 - 2
    assert ports.release("a") == []
    assert ports.release("nobody") == []


def test_free_ranges_are_the_gaps_between_taken_ports() -> None:
    ports = pool()
    ports.reserve(31006, "a")
    assert ports.free_ranges() == [(31000, 31005), (31007, 32000)]
    assert format_ranges(ports.free_ranges()) == "31000-31005,31007-32000"
    for port in (31000, 31002, 32000):
        ports.reserve(port, "b")
    assert ports.free_ranges() == [(31001, 31001), (31003, 31005), (31007, 31999)]
    assert format_ranges(ports.free_ranges()) == "31001,31003-31005,31007-31999"
    ports.release("a")
    ports.release("b")
    assert format_ranges(ports.free_ranges()) == "31000-32000"


def test_format_ranges_of_nothing_is_empty() -> None:
    assert format_ranges([]) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("31000-32000", (31000, 32000)),
        (" 8000 - 8080 ", (8000, 8080)),
        ("8080", (8080, 8080)),
        ("1-65535", (1, 65535)),
    ],
)
def test_parse_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    "bad",
    ["", "32000-31000", "0-10", "1-65536", "70000", "a-b", "31000-", "-5", "1-2-3", "1.5-3"],
)
def test_bad_ranges_are_bad_requests(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_range(bad)


def test_a_pool_from_a_range_string() -> None:
    ports = PortPool.from_range("40000-40009")
    assert ports.free_ranges() == [(40000, 40009)]
    with pytest.raises(BadRequest):
        PortPool(200, 100)


class PortPoolMachine(RuleBasedStateMachine):
    """Random allocate/reserve/release sequences never share a port or lose count."""

    LOW, HIGH = 100, 139

    def __init__(self) -> None:
        super().__init__()
        self.pool = PortPool(self.LOW, self.HIGH, random.Random(0))
        self.model: dict[str, set[int]] = {}

    owners = st.sampled_from(["a", "b", "c", "d"])

    @rule(n=st.integers(0, 45), owner=owners)
    def allocate(self, n: int, owner: str) -> None:
        free = self.pool.free_count()
        if n > free:
            with pytest.raises(Conflict):
                self.pool.allocate(n, owner)
            assert self.pool.free_count() == free
            return
        taken = self.pool.allocate(n, owner)
        assert len(set(taken)) == n
        assert not any(set(taken) & ports for ports in self.model.values())
        self.model.setdefault(owner, set()).update(taken)

    @rule(port=st.integers(95, 145), owner=owners)
    def reserve(self, port: int, owner: str) -> None:
        holder = next((o for o, ports in self.model.items() if port in ports), None)
        if not self.LOW <= port <= self.HIGH or holder not in (None, owner):
            with pytest.raises(Conflict):
                self.pool.reserve(port, owner)
            return
        self.pool.reserve(port, owner)
        self.model.setdefault(owner, set()).add(port)

    @rule(owner=owners)
    def release(self, owner: str) -> None:
        assert self.pool.release(owner) == sorted(self.model.pop(owner, set()))

    @invariant()
    def owners_are_disjoint_and_counts_add_up(self) -> None:
        taken = [p for o in "abcd" for p in self.pool.ports_of(o)]
        assert len(taken) == len(set(taken))
        assert self.pool.free_count() + len(taken) == self.HIGH - self.LOW + 1
        for owner in "abcd":
            assert set(self.pool.ports_of(owner)) == self.model.get(owner, set())

    @invariant()
    def free_ranges_cover_exactly_the_free_ports(self) -> None:
        free = [p for low, high in self.pool.free_ranges() for p in range(low, high + 1)]
        assert free == [p for p in range(self.LOW, self.HIGH + 1) if self.pool.owner_of(p) is None]


PortPoolMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
test_port_pool_state_machine = PortPoolMachine.TestCase
