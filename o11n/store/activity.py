"""The event log read for activity charts: the events of a time window, found without a
scan, and when the jobs that started in it had become queued."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from o11n.store.schema import events

MAX_EVENT_ROWS = 500_000  # a window of more events than this yields the newest part only
CHART_STATES = ("queued", "assigned", "succeeded", "failed", "error", "cancelled")


def _first_event_at_or_after(conn: Connection, since: float) -> int | None:
    """The id of the first event at or after `since`: a binary search over the primary key
    (events are numbered in commit order, so `at` grows with the id), with no scan."""
    low, high = conn.execute(select(func.min(events.c.id), func.max(events.c.id))).one()
    if low is None:
        return None

    def at_from(event_id: int) -> float:
        row = conn.execute(
            select(events.c.at).where(events.c.id >= event_id).order_by(events.c.id).limit(1)
        ).one()
        return float(row.at)

    if at_from(high) < since:
        return None
    while low < high:  # the smallest id whose next event is at or after `since`
        middle = (low + high) // 2
        if at_from(middle) < since:
            low = middle + 1
        else:
            high = middle
    return int(low)


def read_activity(
    conn: Connection, tenant: str | None, since: float
) -> tuple[list[tuple[int, float, str, str | None]], dict[int, float]]:
    """The chart's events since `since`, and when jobs started there last became queued."""
    first = _first_event_at_or_after(conn, since)
    if first is None:
        return [], {}
    query = (
        select(events.c.job_id, events.c.at, events.c.state, events.c.previous)
        .where(events.c.id >= first, events.c.state.in_(CHART_STATES))
        .order_by(events.c.id.desc())
        .limit(MAX_EVENT_ROWS)
    )
    if tenant is not None:
        query = query.where(events.c.tenant == tenant)
    rows = [(int(r[0]), float(r[1]), str(r[2]), r[3]) for r in conn.execute(query)][::-1]
    seen_queued = {job_id for job_id, _, state, _ in rows if state == "queued"}
    waiting = sorted({job_id for job_id, _, state, _ in rows if state == "assigned"} - seen_queued)
    before: dict[int, float] = {}
    for start in range(0, len(waiting), 500):
        chunk = waiting[start : start + 500]
        found = conn.execute(
            select(events.c.job_id, func.max(events.c.at))
            .where(events.c.job_id.in_(chunk), events.c.state == "queued", events.c.id < first)
            .group_by(events.c.job_id)
        )
        before.update({int(job_id): float(at) for job_id, at in found})
    return rows, before
