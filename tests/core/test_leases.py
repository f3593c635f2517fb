"""Leases expire on an injected clock and fence stale reports."""

from __future__ import annotations

import pytest

from o11n.core.jobs import JobSpec
from o11n.core.leases import Lease, LeaseBook
from o11n.errors import LeaseExpired
from tests.clock import Clock


def lease(job_id: int, worker: str = "w1", attempt: int = 1) -> Lease:
    spec = JobSpec(command=["true"], resources={"cpu": 2, "memory": "1G"})
    return Lease(job_id, attempt, f"lease-{job_id}-{attempt}", worker, "t", spec)


def test_leases_expire_unless_renewed() -> None:
    clock = Clock(1000.0)
    book = LeaseBook(clock, duration=30)
    one, two = book.grant(lease(1)), book.grant(lease(2))
    clock.now += 20
    book.renew(one)
    clock.now += 15
    assert book.expired() == [two]


def test_check_refuses_other_attempts() -> None:
    book = LeaseBook(Clock(1000.0), 30)
    book.grant(lease(1, attempt=2))
    assert book.check(1, 2, "lease-1-2").attempt == 2
    with pytest.raises(LeaseExpired):
        book.check(1, 1, "lease-1-1")
    with pytest.raises(LeaseExpired):
        book.check(1, 2, "forged")
    book.release(1)
    with pytest.raises(LeaseExpired):
        book.check(1, 2, "lease-1-2")


def test_resources_used_by_a_worker() -> None:
    book = LeaseBook(Clock(1000.0), 30)
    book.grant(lease(1))
    book.grant(lease(2))
    book.grant(lease(3, worker="w2"))
    assert book.used_by("w1") == (4.0, 2 * 2**30, 0)
    book.release(2)
    assert book.used_by("w1") == (2.0, 2**30, 0)
    assert [x.job_id for x in book.of_worker("w2")] == [3]
