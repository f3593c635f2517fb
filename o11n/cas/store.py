"""Blobs on disk, named by the SHA-256 of their content, each stored once.

A blob lives at `root/ab/cdef...` (its first two hex digits as a folder). A
write goes to a temporary file beside the blobs while it is hashed, and is
renamed into place only when its digest is the one promised, so a reader never
sees a partial or wrong blob and two writers of one blob cannot collide. The
scheduler's store serves pipelines' workspaces and artifacts, their step cache,
and the Remote Execution API's CAS and action cache.

With `cap_bytes` the store keeps each blob's size and last use in memory
(rebuilt from the files and their mtimes at start-up) and, when a write takes
it over the cap, drops the least recently used blobs that no pin holds and no
keeper needs (`eviction.py`). One lock makes each rename or unlink and its
bookkeeping a single step, so a blob that is written, read, found present or
pinned while a pass runs is never dropped by it. One `CasStore` per folder: a
second one would not see the first one's pins.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from o11n.cas.eviction import RETRY_SECONDS, Keeper, LruIndex, Pin, low_water
from o11n.errors import BadRequest, NotFound

log = logging.getLogger(__name__)

DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024
_FOLDER = re.compile(r"^[0-9a-f]{2}$")
_REST = re.compile(r"^[0-9a-f]{62}$")


def check_digest(digest: str) -> str:
    """A digest as o11n writes it (64 lower-case hex digits), or BadRequest."""
    if not DIGEST.match(digest):
        raise BadRequest(f"{digest[:80]!r} is not a SHA-256 digest (64 lower-case hex digits)")
    return digest


def digest_of(data: bytes) -> str:
    """The SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    """The SHA-256 of a file's content."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def scan_blobs(root: Path) -> Iterator[tuple[str, int, float]]:
    """Every blob stored under `root`: its digest, size and mtime (other files are left out)."""
    with os.scandir(root) as folders:
        for folder in folders:
            if _FOLDER.match(folder.name) and folder.is_dir(follow_symlinks=False):
                yield from _scan_folder(folder)


def _scan_folder(folder: os.DirEntry[str]) -> Iterator[tuple[str, int, float]]:
    with os.scandir(folder.path) as files:
        for file in files:
            if _REST.match(file.name) and file.is_file(follow_symlinks=False):
                stat = file.stat(follow_symlinks=False)
                yield folder.name + file.name, stat.st_size, stat.st_mtime


@dataclass(frozen=True)
class CasStats:
    """The store's size and evictions, for /metrics."""

    count: int
    bytes: int
    cap: int | None
    pinned: int  # distinct digests held by pins (one that only grows is a leaked pin)
    evicted_total: int
    evicted_bytes_total: int
    shortfalls_total: int  # eviction passes that ended over the cap: everything left was needed


class BlobWriter:
    """A blob being written: hashed as it comes, stored by `commit`."""

    def __init__(self, store: CasStore, limit: int) -> None:
        self._store, self._limit = store, limit
        fd, name = tempfile.mkstemp(dir=store.root / "tmp")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Add bytes to the blob; BadRequest past the size limit."""
        self.size += len(data)
        if self.size > self._limit:
            raise BadRequest(f"a blob may hold at most {self._limit} bytes")
        self._hash.update(data)
        self._file.write(data)

    def commit(self, expected: str | None = None) -> str:
        """Store the blob; its digest. BadRequest when it is not `expected`."""
        self._file.close()
        digest = self._hash.hexdigest()
        if expected is not None and digest != expected:
            self.discard()
            raise BadRequest(f"the content's SHA-256 is {digest}, not {expected}")
        self._store._add_file(self._path, digest, self.size)
        return digest

    def discard(self) -> None:
        """Drop what was written."""
        self._file.close()
        self._path.unlink(missing_ok=True)


class CasStore:
    """Blobs under one folder, optionally capped in total size."""

    def __init__(
        self,
        root: Path,
        max_blob_bytes: int = 8 * 1024**3,
        *,
        cap_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        self.cap_bytes = cap_bytes
        self._clock = clock  # wall-clock seconds: its values become file mtimes
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index = LruIndex()
        self._index.load(scan_blobs(root))
        self._keepers: list[Keeper] = []
        self._evicting = False
        self._retry_at = float("-inf")
        self._evicted = self._evicted_bytes = self._shortfalls = 0

    def path(self, digest: str) -> Path:
        """Where a blob is (or would be) stored. Reading through it is not a use: `touch` first."""
        check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        """Is the blob stored? A yes is a use (a client told so relies on the blob staying)."""
        return not self._use([check_digest(digest)])

    def touch(self, digest: str) -> bool:
        """Count a use of a blob read through `path()`; whether it is stored."""
        return self.has(digest)

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The digests of those blobs that are not stored, each once, in the order given.
        The stored ones are used."""
        return self._use(list(dict.fromkeys(check_digest(d) for d in digests)))

    @contextlib.contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """A blob to write; dropped unless committed."""
        blob = BlobWriter(self, self.max_blob_bytes)
        try:
            yield blob
        except BaseException:
            blob.discard()
            raise

    def put(self, data: bytes) -> str:
        """Store bytes; their digest."""
        with self.writer() as blob:
            blob.write(data)
            return blob.commit()

    def read(self, digest: str) -> bytes:
        """A blob's bytes; NotFound when it is not stored."""
        with self._open(digest) as f:
            return f.read()

    def pin(self, digests: Iterable[str]) -> Pin:
        """Keep these blobs (stored or still to be written) until the pin is released."""
        held = tuple(dict.fromkeys(check_digest(d) for d in digests))
        with self._lock:
            self._index.pin(held)
        return Pin(held, self._unpin)

    def add_keeper(self, keeper: Keeper) -> None:
        """Ask `keeper` at every eviction pass for digests that must stay (a cache's results)."""
        with self._lock:
            self._keepers.append(keeper)

    def evict(self) -> int:
        """Drop least recently used blobs that nothing needs until the store is at its
        low-water mark; the bytes freed (0 without a cap or while another pass runs)."""
        with self._lock:
            bound = self._index.seq + 1
        return self._evict(bound)

    def stats(self) -> CasStats:
        """How many blobs, how many bytes, and what eviction has done."""
        with self._lock:
            return CasStats(
                count=len(self._index),
                bytes=self._index.total,
                cap=self.cap_bytes,
                pinned=self._index.pinned,
                evicted_total=self._evicted,
                evicted_bytes_total=self._evicted_bytes,
                shortfalls_total=self._shortfalls,
            )

    def _use(self, digests: list[str]) -> list[str]:
        """Mark stored blobs used; those that are not stored."""
        now = self._clock()
        absent, behind = [], []
        with self._lock:
            for digest in digests:
                entry = self._index.use(digest)
                if entry is None:
                    absent.append(digest)
                elif entry.advance_mtime(now):
                    behind.append(digest)
        self._move_mtimes(behind, now)
        return absent

    def _move_mtimes(self, digests: list[str], now: float) -> None:
        # Outside the lock: a file evicted meanwhile has no mtime to move, and that is fine.
        for digest in digests:
            with contextlib.suppress(OSError):
                os.utime(self.path(digest), (now, now))

    def _open(self, digest: str) -> IO[bytes]:
        """A stored blob's file, open. Opened under the lock, so no eviction comes between
        the use and the open; once it is open, an unlink does not cut the read short."""
        path = self.path(digest)
        now = self._clock()
        with self._lock:
            entry = self._index.use(digest)
            if entry is None:
                raise NotFound(f"no blob {digest}")
            try:
                file = path.open("rb")
            except FileNotFoundError:  # removed behind the store's back
                self._index.remove(digest)
                raise NotFound(f"no blob {digest}") from None
            behind = entry.advance_mtime(now)
        if behind:
            self._move_mtimes([digest], now)
        return file

    def _add_file(self, temp: Path, digest: str, size: int) -> None:
        """Move a verified blob into place, then evict if it took the store over its cap."""
        target = self.path(digest)
        target.parent.mkdir(exist_ok=True)
        now = self._clock()
        with self._lock:
            # The rename and the index entry as one step: a pass that had chosen an older
            # copy of this blob cannot unlink the new file after the rename.
            os.replace(temp, target)
            entry = self._index.add(digest, size, now)
            due = self._eviction_due(now)
        if due:
            self._evict(entry.seq)  # this blob and those used after it are not evicted

    def _eviction_due(self, now: float) -> bool:
        return (
            self.cap_bytes is not None
            and self._index.total > self.cap_bytes
            and not self._evicting
            and now >= self._retry_at
        )

    def _unpin(self, pin: Pin) -> None:
        with self._lock:
            if not pin.released:
                pin.released = True
                self._index.unpin(pin.digests)

    def _evict(self, bound: int) -> int:
        """One eviction pass at a time; blobs used at or after `bound` stay."""
        if self.cap_bytes is None:
            return 0
        with self._lock:
            if self._evicting:
                return 0
            self._evicting = True
        try:
            kept = self._kept()
            freed = 0 if kept is None else self._drop_unneeded(kept, bound, self.cap_bytes)
            self._end_pass(self.cap_bytes)
            return freed
        finally:
            with self._lock:
                self._evicting = False

    def _kept(self) -> set[str] | None:
        """Every digest the keepers need; None (evict nothing) when one of them fails.
        Asked outside the lock, so a keeper may call the store."""
        with self._lock:
            keepers = list(self._keepers)
        kept: set[str] = set()
        try:
            for keeper in keepers:
                kept.update(keeper())
        except Exception:
            log.exception("a blob store keeper failed: nothing is evicted in this pass")
            return None
        return kept

    def _drop_unneeded(self, kept: set[str], bound: int, cap_bytes: int) -> int:
        """Unlink least recently used blobs that are not kept, pinned or used since
        `bound`, until the store is at its low-water mark; the bytes freed."""
        target = low_water(cap_bytes)
        with self._lock:
            candidates = self._index.oldest_first()
        freed = 0
        for digest in candidates:
            if digest in kept:
                continue
            with self._lock:  # taken per blob, so readers and writers go on during a pass
                if self._index.total <= target:
                    break
                freed += self._drop(digest, bound)
        return freed

    def _drop(self, digest: str, bound: int) -> int:
        """Unlink one blob if it may go (the caller holds the lock); its size, or 0."""
        entry = self._index.evictable(digest, bound)
        if entry is None:
            return 0
        try:
            self.path(digest).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot evict blob %s: %s", digest, exc)
            return 0
        self._index.remove(digest)
        self._evicted += 1
        self._evicted_bytes += entry.size
        return entry.size

    def _end_pass(self, cap_bytes: int) -> None:
        """Note a pass that could not get under the cap, and hold off the next one."""
        with self._lock:
            total = self._index.total
            if total <= cap_bytes:
                self._retry_at = float("-inf")
                return
            self._shortfalls += 1
            self._retry_at = self._clock() + RETRY_SECONDS
        log.warning(
            "the blob store holds %d bytes after an eviction pass, over its cap of %d: what "
            "is left is pinned, kept or in use (or a keeper failed); next pass in %gs at most",
            total,
            cap_bytes,
            RETRY_SECONDS,
        )
