"""The REAPI view of o11n's content-addressed store: blobs named by hash and size.

o11n's store names blobs by SHA-256 alone; here every read checks the size a
client named as well, every write checks both, and the empty blob is always
present (clients never upload it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from o11n.cas.store import BlobWriter, CasStore
from o11n.errors import BadRequest, NotFound
from o11n.reapi import digests
from o11n.reapi.protos import re_pb2


class Blobs:
    """Digest-checked reads and writes of the scheduler's store."""

    def __init__(self, cas: CasStore) -> None:
        self.cas = cas

    def present(self, digest: re_pb2.Digest) -> bool:
        """Is the blob stored with this size?"""
        if digest.size_bytes == 0 and digest.hash == digests.EMPTY_HASH:
            return True
        if not self.cas.has(digest.hash):  # a use: eviction keeps what clients were told of
            return False
        try:
            return self.cas.path(digest.hash).stat().st_size == digest.size_bytes
        except FileNotFoundError:
            return False

    async def missing(self, wanted: Iterable[re_pb2.Digest]) -> list[re_pb2.Digest]:
        """The digests of blobs not stored, each once."""
        unique = {(d.hash, d.size_bytes): d for d in wanted}
        present = await asyncio.to_thread(lambda: [self.present(d) for d in unique.values()])
        return [d for d, ok in zip(unique.values(), present, strict=True) if not ok]

    def read_now(self, digest: re_pb2.Digest) -> bytes:
        """A blob's bytes; NotFound when absent or of another size (blocking)."""
        if digest.size_bytes == 0 and digest.hash == digests.EMPTY_HASH:
            return b""
        data = self.cas.read(digest.hash)
        if len(data) != digest.size_bytes:
            raise NotFound(f"no blob {digests.text(digest)}")
        return data

    async def read(self, digest: re_pb2.Digest) -> bytes:
        """A blob's bytes; NotFound when absent or of another size."""
        return await asyncio.to_thread(self.read_now, digest)

    async def read_range(self, digest: re_pb2.Digest, offset: int, length: int) -> bytes:
        """Up to `length` bytes of a blob from `offset` (finding it present is its use)."""

        def read() -> bytes:
            if not self.present(digest):
                raise NotFound(f"no blob {digests.text(digest)}")
            if digest.size_bytes == 0:
                return b""
            with self.cas.path(digest.hash).open("rb") as f:
                f.seek(offset)
                return f.read(length)

        return await asyncio.to_thread(read)

    def put_now(self, data: bytes, digest: re_pb2.Digest | None = None) -> re_pb2.Digest:
        """Store bytes (checked against `digest` when given); their digest (blocking)."""
        if digest is not None and len(data) != digest.size_bytes:
            raise BadRequest(
                f"{len(data)} bytes sent for a blob of {digest.size_bytes} ({digest.hash})"
            )
        with self.cas.writer() as blob:
            blob.write(data)
            stored = blob.commit(digest.hash if digest is not None else None)
        return re_pb2.Digest(hash=stored, size_bytes=len(data))

    async def put(self, data: bytes, digest: re_pb2.Digest | None = None) -> re_pb2.Digest:
        """Store bytes (checked against `digest` when given); their digest."""
        return await asyncio.to_thread(self.put_now, data, digest)

    def writer(self) -> BlobWriter:
        """A blob to write in parts (a ByteStream upload); the caller commits or discards."""
        return BlobWriter(self.cas, self.cas.max_blob_bytes)
