"""A job's files: its input tree laid out before it runs, its outputs stored after.

Blobs come from the scheduler's content-addressed store and are kept in a
local cache beside the work directories, so a workspace that many jobs share
is downloaded once per worker; each job gets its own copy of every file (a
job may change its files; the cache must not change with them). With a cap,
the least recently used blobs are dropped once the cache outgrows it, never
one that a tree being laid out still needs.

A cached blob is never trusted: each copy into a job's folder is hashed as it is
made, and a blob (or tree) whose cached content is not its digest any more is
fetched again. Outputs are read once, from descriptors that follow no link, into
memory or a staging folder of the cache; what is uploaded is those bytes, never
read from the job's paths again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from o11n.cas import nofollow
from o11n.cas import tree as trees
from o11n.cas.eviction import LruIndex, low_water
from o11n.cas.store import check_digest, digest_of
from o11n.errors import BadRequest, BlobMismatch
from o11n.worker.api import WorkerApi

log = logging.getLogger(__name__)
PARALLEL_TRANSFERS = 8
REFETCHES = 3  # times a lay-out fetches again a blob whose cached copy changed
STAGING = "outputs-"  # the prefix of the cache's staging folders (never a digest)


class Files:
    """Moves trees between the scheduler's store and work directories."""

    def __init__(self, api: WorkerApi, cache: Path, cap_bytes: int | None = None) -> None:
        self.api = api
        self.cache = cache
        self.cap_bytes = cap_bytes
        cache.mkdir(parents=True, exist_ok=True)
        for left in cache.glob(STAGING + "*"):  # an earlier run's, cut short
            shutil.rmtree(left, ignore_errors=True)
        self._slots = asyncio.Semaphore(PARALLEL_TRANSFERS)
        self._index = LruIndex()  # used from the event loop only
        self._index.load(_found(cache))

    def blob(self, digest: str) -> Path:
        """Where a blob is kept in the local cache."""
        return self.cache / digest

    @property
    def cached_bytes(self) -> int:
        """The size of the blobs in the local cache."""
        return self._index.total

    async def lay_out(self, digest: str, dest: Path) -> None:
        """Write the tree `digest` into `dest`. A cached blob that changed on disk is
        fetched again; BlobMismatch if it keeps changing."""
        held = [digest]
        self._index.pin(held)
        try:
            tree = trees.from_bytes(await self._read(digest))
            needed = sorted({e.digest for e in tree.values() if e.digest})
            self._index.pin(needed)
            held += needed
            await asyncio.gather(*(self._fetch(d) for d in needed))
            for refetch in range(REFETCHES + 1):
                try:
                    await asyncio.to_thread(trees.lay_out, tree, dest, self.blob)
                    break
                except BlobMismatch as exc:
                    if refetch == REFETCHES:
                        raise
                    await self._refetch(exc.digest)
        finally:
            self._index.unpin(held)
        self._evict()

    async def store(
        self, cwd: Path, patterns: list[str], required: bool = True, *, beneath: Path | None = None
    ) -> str:
        """Store the files under `cwd` that match `patterns`; the digest of their tree.
        BadRequest when a `required` pattern matches nothing (a declared artifact that was
        not made). Outputs that are not `required` (a build action's, named by literal
        paths) keep the empty folders they name or hold; artifacts stay files and links.
        With `beneath` (a folder no job can change), `cwd` is reached from it following
        no link (`trees.scan`)."""
        stage = Path(tempfile.mkdtemp(prefix=STAGING, dir=self.cache))
        try:
            only = trees.matcher(patterns)
            tree, sources = await asyncio.to_thread(
                trees.scan,
                cwd,
                ignore_files=False,
                only=only,
                folders=None if required else only,
                copy_to=stage,
                beneath=beneath,
            )
            for pattern in patterns if required else ():
                if not trees.select(tree, [pattern]):
                    raise BadRequest(f"artifact {pattern!r}: no such file in the work directory")
            await self._upload_missing(sources)
            listing = trees.to_bytes(tree)
            digest = digest_of(listing)
            await self._upload(digest, listing)
        finally:
            await asyncio.to_thread(shutil.rmtree, stage, True)
        return digest

    async def _upload_missing(self, sources: dict[str, Path | bytes]) -> None:
        wanted, missing = sorted(sources), []
        for i in range(0, len(wanted), 10_000):
            body = {"digests": wanted[i : i + 10_000]}
            missing += (await self.api.call("/api/v1/cas/missing", body))["missing"]
        await asyncio.gather(*(self._upload(d, sources[d]) for d in missing))

    async def _read(self, digest: str) -> bytes:
        """A blob's bytes from the cache, fetched again when they are not its digest."""
        for refetch in range(REFETCHES + 1):
            await self._fetch(digest)
            data = await asyncio.to_thread(_read_blob, self.blob(digest))
            if digest_of(data) == digest:
                return data
            if refetch < REFETCHES:
                await self._refetch(digest)
        raise BlobMismatch(digest)

    async def _refetch(self, digest: str) -> None:
        """Drop a cached blob whose content changed, and fetch it again."""
        log.warning("blob cache: %s changed on disk; fetching it again", digest)
        self._index.remove(digest)  # the download replaces the file in one rename
        await self._fetch(digest)

    async def _fetch(self, digest: str) -> None:
        if self._index.use(digest) is not None and self.blob(digest).exists():
            return
        async with self._slots:
            await self.api.get_blob(digest, self.blob(digest))
        self._index.add(digest, self.blob(digest).stat().st_size, time.time())

    def _evict(self) -> None:
        """Past the cap, drop the least recently used blobs that nothing holds."""
        if self.cap_bytes is None or self._index.total <= self.cap_bytes:
            return
        goal, dropped = low_water(self.cap_bytes), 0
        for digest in self._index.oldest_first():
            if self._index.total <= goal:
                break
            if self._index.evictable(digest, self._index.seq + 1) is None:
                continue  # a tree being laid out needs it
            self.blob(digest).unlink(missing_ok=True)
            self._index.remove(digest)
            dropped += 1
        log.info("blob cache: dropped %d blobs, %d bytes kept", dropped, self._index.total)

    async def _upload(self, digest: str, source: Path | bytes) -> None:
        async with self._slots:
            await self.api.put_blob(digest, source)


def _read_blob(path: Path) -> bytes:
    """A cached blob's bytes, read without following a link or blocking on a FIFO;
    b"" (never a blob's digest) when it is not a regular file any more."""
    try:
        fd = os.open(path, nofollow.FILE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return b""
        raise
    with open(fd, "rb") as f:
        return f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else b""


def _found(cache: Path) -> list[tuple[str, int, float]]:
    """The blobs an earlier run left in the cache (digest, size, mtime)."""
    found = []
    for path in cache.iterdir():
        try:
            check_digest(path.name)
            info = path.stat()
        except (BadRequest, OSError):
            continue  # a partial download, or not a blob
        found.append((path.name, info.st_size, info.st_mtime))
    return found
