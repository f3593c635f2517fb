"""A job's files: its input tree laid out before it runs, its outputs stored after.

Blobs come from the scheduler's content-addressed store and are kept in a
local cache beside the work directories, so a workspace that many jobs share
is downloaded once per worker; each job gets its own copy of every file (a
job may change its files; the cache must not change with them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from o11n.cas import tree as trees
from o11n.cas.store import digest_of
from o11n.errors import BadRequest
from o11n.worker.api import WorkerApi

PARALLEL_TRANSFERS = 8


class Files:
    """Moves trees between the scheduler's store and work directories."""

    def __init__(self, api: WorkerApi, cache: Path) -> None:
        self.api = api
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self._slots = asyncio.Semaphore(PARALLEL_TRANSFERS)

    def blob(self, digest: str) -> Path:
        """Where a blob is kept in the local cache."""
        return self.cache / digest

    async def lay_out(self, digest: str, dest: Path) -> None:
        """Write the tree `digest` into `dest`."""
        tree = trees.from_bytes(await self._read(digest))
        wanted = {e.digest for e in tree.values() if e.digest and not self.blob(e.digest).exists()}
        await asyncio.gather(*(self._fetch(d) for d in wanted))
        await asyncio.to_thread(trees.lay_out, tree, dest, self.blob)

    async def store(self, cwd: Path, patterns: list[str], required: bool = True) -> str:
        """Store the files under `cwd` that match `patterns`; the digest of their tree.
        BadRequest when a `required` pattern matches nothing (a declared artifact that was
        not made)."""
        tree, sources = await asyncio.to_thread(
            trees.scan, cwd, ignore_files=False, only=trees.matcher(patterns)
        )
        for pattern in patterns if required else ():
            if not trees.select(tree, [pattern]):
                raise BadRequest(f"artifact {pattern!r}: no such file in the work directory")
        wanted, missing = sorted(sources), []
        for i in range(0, len(wanted), 10_000):
            body = {"digests": wanted[i : i + 10_000]}
            missing += (await self.api.call("/api/v1/cas/missing", body))["missing"]
        await asyncio.gather(*(self._upload(d, sources[d]) for d in missing))
        listing = trees.to_bytes(tree)
        digest = digest_of(listing)
        await self._upload(digest, listing)
        return digest

    async def _read(self, digest: str) -> bytes:
        await self._fetch(digest)
        return await asyncio.to_thread(self.blob(digest).read_bytes)

    async def _fetch(self, digest: str) -> None:
        if self.blob(digest).exists():
            return
        async with self._slots:
            await self.api.get_blob(digest, self.blob(digest))

    async def _upload(self, digest: str, source: Path | bytes) -> None:
        async with self._slots:
            await self.api.put_blob(digest, source)
