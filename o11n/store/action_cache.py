"""The Remote Execution API's action cache rows: (instance, action digest) -> ActionResult."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, select

from o11n.store.schema import action_results


@dataclass(frozen=True, slots=True)
class CachedResult:
    """An ActionResult as stored: its action, and the serialized protobuf."""

    instance: str
    digest: str
    size: int
    result: bytes


class ActionCacheStore:
    """Reads and writes of cached action results."""

    def get(self, conn: Connection, instance: str, digest: str) -> bytes | None:
        """The serialized ActionResult of an action, if one is cached."""
        query = select(action_results.c.result).where(
            action_results.c.instance == instance, action_results.c.digest == digest
        )
        found = conn.execute(query).scalar()
        return None if found is None else bytes(found)

    def put(self, conn: Connection, row: CachedResult, now: float) -> None:
        """Cache an action's result, replacing an earlier one (writer thread)."""
        conn.execute(
            delete(action_results).where(
                action_results.c.instance == row.instance, action_results.c.digest == row.digest
            )
        )
        values = {
            "instance": row.instance,
            "digest": row.digest,
            "size": row.size,
            "result": row.result,
            "created_at": now,
        }
        conn.execute(action_results.insert().values(**values))

    def drop(self, conn: Connection, instance: str, digest: str) -> None:
        """Forget an action's result (its blobs are gone)."""
        conn.execute(
            delete(action_results).where(
                action_results.c.instance == instance, action_results.c.digest == digest
            )
        )

    def all(self, conn: Connection) -> list[CachedResult]:
        """Every cached result (start-up: which blobs the cache needs)."""
        return [
            CachedResult(r.instance, r.digest, r.size, bytes(r.result))
            for r in conn.execute(select(action_results))
        ]
