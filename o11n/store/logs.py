"""Job logs: chunks keyed by (job, attempt, seq), so a re-sent chunk is stored once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, tuple_

from o11n.store.database import Database
from o11n.store.schema import logs


@dataclass(frozen=True, slots=True)
class LogChunk:
    """A piece of one attempt's stdout or stderr; `seq` orders the chunks of an attempt."""

    job_id: int
    attempt: int
    seq: int
    stream: str
    at: float
    data: bytes


class LogStore:
    """Appends and reads log chunks."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, conn: Connection, chunks: list[LogChunk]) -> list[LogChunk]:
        """Store chunks not stored before; returns the new ones (writer thread)."""
        keys = [(c.job_id, c.attempt, c.seq) for c in chunks]
        seen = {
            tuple(r)
            for r in conn.execute(
                select(logs.c.job_id, logs.c.attempt, logs.c.seq).where(
                    tuple_(logs.c.job_id, logs.c.attempt, logs.c.seq).in_(keys)
                )
            )
        }
        fresh: dict[tuple[int, int, int], LogChunk] = {}
        for chunk, key in zip(chunks, keys, strict=True):
            if key not in seen:
                fresh.setdefault(key, chunk)
        if fresh:
            conn.execute(
                logs.insert(),
                [
                    {
                        "job_id": c.job_id,
                        "attempt": c.attempt,
                        "seq": c.seq,
                        "stream": c.stream,
                        "at": c.at,
                        "data": c.data,
                    }
                    for c in fresh.values()
                ],
            )
        return list(fresh.values())

    def read(
        self, conn: Connection, job_id: int, *, after: tuple[int, int] = (0, -1), limit: int = 1000
    ) -> list[LogChunk]:
        """Chunks of a job in order, after the (attempt, seq) position `after`."""
        query = (
            select(logs)
            .where(logs.c.job_id == job_id, tuple_(logs.c.attempt, logs.c.seq) > after)
            .order_by(logs.c.attempt, logs.c.seq)
            .limit(limit)
        )
        return [
            LogChunk(r.job_id, r.attempt, r.seq, r.stream, r.at, bytes(r.data))
            for r in conn.execute(query)
        ]
