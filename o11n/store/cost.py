"""The attempts that ran, with their job's cores and their worker's cores and price."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, select

from o11n.core.cost import AttemptUse
from o11n.store.schema import attempts, job_meta, jobs, workers

PIPELINE_LABEL = "o11n.pipeline"


def attempt_uses(conn: Connection, since: float = 0.0) -> list[AttemptUse]:
    """Every attempt that started and ended (after `since`), priced by its worker."""
    pipeline = (
        select(job_meta.c.job_id, job_meta.c.value)
        .where(job_meta.c.kind == "label", job_meta.c.key == PIPELINE_LABEL)
        .subquery()
    )
    query = (
        select(
            attempts.c.job_id,
            attempts.c.worker,
            attempts.c.started_at,
            attempts.c.ended_at,
            jobs.c.tenant,
            jobs.c.spec,
            pipeline.c.value.label("pipeline"),
            workers.c.capacity,
            workers.c.attributes,
        )
        .join(jobs, jobs.c.id == attempts.c.job_id)
        .outerjoin(pipeline, pipeline.c.job_id == attempts.c.job_id)
        .outerjoin(workers, workers.c.name == attempts.c.worker)
        .where(
            and_(
                attempts.c.started_at.is_not(None),
                attempts.c.ended_at.is_not(None),
                attempts.c.ended_at >= since,
            )
        )
    )
    return [_use(row) for row in conn.execute(query)]


def _use(r: Any) -> AttemptUse:  # a Row of the query above
    spec = json.loads(r.spec)
    capacity = json.loads(r.capacity or "{}")
    price = json.loads(r.attributes or "{}").get("price", 0.0)
    return AttemptUse(
        job_id=r.job_id,
        tenant=r.tenant,
        pipeline=r.pipeline,
        worker=r.worker,
        started_at=r.started_at,
        ended_at=r.ended_at,
        cpu=float(spec.get("resources", {}).get("cpu", 1.0)),
        worker_cpu=float(capacity.get("cpu", 0.0)),
        hourly_price=float(price) if isinstance(price, int | float) else 0.0,
    )
