"""Blobs on disk, named by the SHA-256 of their content, each stored once.

A blob lives at `root/ab/cdef...` (its first two hex digits as a folder). A
write goes to a temporary file beside the blobs while it is hashed, and is
renamed into place only when its digest is the one promised, so a reader never
sees a partial or wrong blob and two writers of one blob cannot collide. The
scheduler's store serves pipelines' workspaces and artifacts, and later the
Remote Execution API.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from o11n.errors import BadRequest, NotFound

DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


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
        target = self._store.path(digest)
        target.parent.mkdir(exist_ok=True)
        os.replace(self._path, target)
        return digest

    def discard(self) -> None:
        """Drop what was written."""
        self._file.close()
        self._path.unlink(missing_ok=True)


class CasStore:
    """Blobs under one folder."""

    def __init__(self, root: Path, max_blob_bytes: int = 8 * 1024**3) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where a blob is (or would be) stored."""
        check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        """Is the blob stored?"""
        return self.path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The digests of those blobs that are not stored, each once, in the order given."""
        return [d for d in dict.fromkeys(digests) if not self.has(d)]

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
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no blob {digest}") from None
