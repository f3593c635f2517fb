"""The event log's activity window: found by a binary search over event ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, insert

from o11n.store.activity import read_activity
from o11n.store.schema import events, metadata


@pytest.fixture
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def _event(event_id: int, job_id: int, at: float, state: str, tenant: str = "t") -> dict[str, Any]:
    return {
        "id": event_id,
        "job_id": job_id,
        "tenant": tenant,
        "at": at,
        "state": state,
        "previous": None,
        "attempt": 0,
    }


def test_read_activity_starts_at_the_window_and_finds_earlier_queueing(conn: Connection) -> None:
    rows = [_event(i, i, float(i), "queued") for i in range(1, 200, 3)]  # ids with gaps
    rows += [_event(500, 1, 400.0, "assigned"), _event(501, 7, 401.0, "assigned", "other")]
    conn.execute(insert(events), rows)
    got, before = read_activity(conn, None, 250.0)
    assert [r[1] for r in got] == [400.0, 401.0]
    assert before == {1: 1.0, 7: 7.0}
    got, before = read_activity(conn, "other", 0.0)
    assert [(r[0], r[2]) for r in got] == [(7, "assigned")]
    assert read_activity(conn, None, 1000.0) == ([], {})
    assert read_activity(conn, None, 100.0)[0][0][1] == 100.0  # an id that exists
    assert read_activity(conn, None, 101.0)[0][0][1] == 103.0  # between two ids


def test_read_activity_of_an_empty_log(conn: Connection) -> None:
    assert read_activity(conn, None, 0.0) == ([], {})
