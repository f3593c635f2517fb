"""Cost of attempts: runtime times the job's share of its worker's hourly price."""

from __future__ import annotations

import pytest

from o11n.core.cost import AttemptUse, report

DAY1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def use(job_id: int, tenant: str, seconds: float, cpu: float, **kw: object) -> AttemptUse:
    values: dict[str, object] = {
        "job_id": job_id,
        "tenant": tenant,
        "pipeline": None,
        "worker": "w1",
        "started_at": DAY1,
        "ended_at": DAY1 + seconds,
        "cpu": cpu,
        "worker_cpu": 8.0,
        "hourly_price": 0.27,
    }
    values.update(kw)
    return AttemptUse(**values)  # type: ignore[arg-type]


def test_an_attempt_pays_its_share_of_the_worker() -> None:
    # 30 minutes on 2 of 8 cores of a 0.27/h worker: 0.5 h * 0.27 * 2/8 = 0.03375
    assert use(1, "a", 1800, 2).cost == pytest.approx(0.03375)
    # asking for more than the worker has pays the whole worker, not more
    assert use(2, "a", 3600, 16).cost == pytest.approx(0.27)
    assert use(3, "a", 3600, 1, hourly_price=0.0).cost == 0.0


def test_reports_group_and_sort_by_cost() -> None:
    uses = [
        use(1, "a", 3600, 8),  # 0.27
        use(2, "b", 3600, 4),  # 0.135
        use(3, "a", 1800, 8, started_at=DAY1 + 86400, ended_at=DAY1 + 86400 + 1800),  # 0.135
    ]
    by_tenant = report(uses, "tenant")
    assert [(x.key, x.attempts) for x in by_tenant] == [("a", 2), ("b", 1)]
    assert by_tenant[0].cost == pytest.approx(0.405) and by_tenant[0].hours == pytest.approx(1.5)
    by_day = report(uses, "day")
    assert [(x.key, round(x.cost, 4)) for x in by_day] == [
        ("2026-01-01", 0.405),
        ("2026-01-02", 0.135),
    ]
    assert [x.key for x in report(uses, "pipeline")] == ["-"]
