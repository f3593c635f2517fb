"""Pipeline rows: the taskbook and options of each run, where it stands, how it ended."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from o11n.store.database import Database
from o11n.store.schema import pipelines, step_cache

LIVE = "running"


@dataclass(frozen=True, slots=True)
class PipelineRow:
    """A stored pipeline run."""

    id: int
    tenant: str
    name: str
    state: str
    taskbook: dict[str, Any]
    options: dict[str, Any]
    created_at: float
    updated_at: float
    finished_at: float | None
    summary: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CacheHit:
    """An earlier success of a substage with the same cache key."""

    job_id: int
    pipeline_id: int
    substage: str
    outputs: str | None


class PipelineStore:
    """Reads and writes of pipeline runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._next = db.max_id(pipelines.c.id) + 1

    def insert(
        self,
        conn: Connection,
        tenant: str,
        name: str,
        taskbook: dict[str, Any],
        options: dict[str, Any],
        now: float,
    ) -> int:
        """Store a new running pipeline; returns its id (writer thread)."""
        pipeline_id = self._next
        self._next += 1
        values = {
            "id": pipeline_id,
            "tenant": tenant,
            "name": name,
            "state": LIVE,
            "taskbook": json.dumps(taskbook),
            "options": json.dumps(options),
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(pipelines.insert().values(**values))
        return pipeline_id

    def finish(
        self, conn: Connection, pipeline_id: int, state: str, summary: dict[str, Any], now: float
    ) -> None:
        """Record how a pipeline ended, and how each of its steps did."""
        values = {
            "state": state,
            "summary": json.dumps(summary),
            "updated_at": now,
            "finished_at": now,
        }
        conn.execute(pipelines.update().where(pipelines.c.id == pipeline_id).values(**values))

    def get(self, conn: Connection, pipeline_id: int) -> PipelineRow | None:
        """One pipeline run."""
        row = conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id)).first()
        return None if row is None else _row(row)

    def find(
        self, conn: Connection, tenant: str | None = None, live: bool = False, limit: int = 50
    ) -> list[PipelineRow]:
        """Pipelines newest first (only running ones with `live`)."""
        query = select(pipelines).order_by(pipelines.c.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(pipelines.c.tenant == tenant)
        if live:
            query = query.where(pipelines.c.state == LIVE)
        return [_row(r) for r in conn.execute(query)]

    def cached(self, conn: Connection, tenant: str, key: str) -> CacheHit | None:
        """The success recorded under a step cache key, if any."""
        query = select(step_cache).where(step_cache.c.tenant == tenant, step_cache.c.key == key)
        row = conn.execute(query).first()
        if row is None:
            return None
        return CacheHit(row.job_id, row.pipeline_id, row.substage, row.outputs)

    def cached_outputs(self, conn: Connection) -> list[str]:
        """The output trees of every step cache entry (what the store must keep)."""
        query = select(step_cache.c.outputs).where(step_cache.c.outputs.is_not(None)).distinct()
        return [row.outputs for row in conn.execute(query)]

    def remember(self, conn: Connection, tenant: str, key: str, hit: CacheHit, now: float) -> None:
        """Record a success under its cache key (the first one recorded stays)."""
        values = {
            "tenant": tenant,
            "key": key,
            "job_id": hit.job_id,
            "pipeline_id": hit.pipeline_id,
            "substage": hit.substage,
            "outputs": hit.outputs,
            "created_at": now,
        }
        conn.execute(self.db.insert_ignore(step_cache).values(**values))


def _row(r: Any) -> PipelineRow:
    return PipelineRow(
        r.id,
        r.tenant,
        r.name,
        r.state,
        json.loads(r.taskbook),
        json.loads(r.options),
        r.created_at,
        r.updated_at,
        r.finished_at,
        json.loads(r.summary) if r.summary else None,
    )
