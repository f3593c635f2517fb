"""The action cache: an action's digest -> its ActionResult, per instance, in the database.

A cached result is only served while every blob it refers to is still in the
store; one that lost a blob is dropped and reads as a miss, so a client never
gets a result it cannot download. The blobs of cached results are what the
store's eviction must keep (`needed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from o11n.errors import MissingBlobs, NotFound
from o11n.reapi import digests
from o11n.reapi.blobs import Blobs
from o11n.reapi.directories import result_blobs
from o11n.reapi.protos import parse, re_pb2
from o11n.store.action_cache import ActionCacheStore, CachedResult
from o11n.store.database import Database


class ActionCache:
    """Cached ActionResults, and the blobs they keep alive."""

    def __init__(self, db: Database, blobs: Blobs, clock: Callable[[], float]) -> None:
        self.db, self.blobs, self.clock = db, blobs, clock
        self.store = ActionCacheStore()
        self._needs: dict[tuple[str, str], frozenset[str]] = {}
        self.hits = self.misses = 0

    def load(self) -> None:
        """Learn which blobs the stored results need (start-up)."""
        for row in self.db.read_now(self.store.all):
            self._needs[(row.instance, row.digest)] = self._blobs_of(_parse(row.result))

    def needed(self) -> set[str]:
        """The hashes of every blob a cached result refers to (the store's keeper; called
        from the thread of a commit, so it reads a copy)."""
        return set().union(*list(self._needs.values()))

    async def get(self, instance: str, action: re_pb2.Digest) -> re_pb2.ActionResult | None:
        """The cached result of an action, if its blobs are all still stored."""
        data = await self.db.read(self.store.get, instance, action.hash)
        result = None if data is None else _parse(data)
        if result is not None and await self._lost_blobs(instance, action.hash, result):
            await self.db.write(self.store.drop, instance, action.hash)
            self._needs.pop((instance, action.hash), None)
            result = None
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    async def put(self, instance: str, action: re_pb2.Digest, result: re_pb2.ActionResult) -> None:
        """Cache an action's result (replacing an earlier one)."""
        digests.checked(action, "action digest")
        data = result.SerializeToString(deterministic=True)
        referenced = await asyncio.to_thread(self._referenced, result)
        self._needs[(instance, action.hash)] = _stored(referenced)
        missing = await self.blobs.missing(referenced)  # never stored, or evicted just now
        if missing:
            self._needs.pop((instance, action.hash), None)
            raise MissingBlobs([f"blobs/{digests.text(d)}" for d in missing])
        row = CachedResult(instance, action.hash, action.size_bytes, data)
        await self.db.write(self.store.put, row, self.clock())

    async def _lost_blobs(self, instance: str, hash_: str, result: re_pb2.ActionResult) -> bool:
        """Has a blob of this result left the store? Checked against the hashes learnt when
        it was cached (no output Tree is read again on a hit)."""
        needs = self._needs.get((instance, hash_))
        if needs is None:
            needs = await asyncio.to_thread(self._blobs_of, result)
        return bool(await asyncio.to_thread(self.blobs.cas.missing, needs))

    def _referenced(self, result: re_pb2.ActionResult) -> list[re_pb2.Digest]:
        return result_blobs(result, self._read_or_nothing)

    def _blobs_of(self, result: re_pb2.ActionResult) -> frozenset[str]:
        return _stored(self._referenced(result))

    def _read_or_nothing(self, digest: re_pb2.Digest) -> bytes:
        try:
            return self.blobs.read_now(digest)
        except NotFound:
            return b""


def _parse(data: bytes) -> re_pb2.ActionResult:
    return parse(re_pb2.ActionResult, data, "a cached result")


def _stored(digests_: list[re_pb2.Digest]) -> frozenset[str]:
    """The hashes of the blobs the store must hold for these digests (the empty blob is
    never stored: it is always present)."""
    return frozenset(d.hash for d in digests_ if d.hash != digests.EMPTY_HASH)
