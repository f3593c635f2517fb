"""ByteStream uploads in progress: resumable, so a client whose stream broke goes on from
what was committed (QueryWriteStatus tells it where)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass

from o11n.cas.store import BlobWriter
from o11n.errors import BadRequest
from o11n.reapi import digests
from o11n.reapi.blobs import Blobs
from o11n.reapi.protos import re_pb2

MAX_PENDING = 1000  # the oldest partial upload is dropped past this many
PENDING_TTL_S = 3600.0


@dataclass
class Upload:
    """A blob being written under one resource name."""

    blob: digests.BlobName
    writer: BlobWriter
    committed: int = 0
    touched: float = 0.0


class Uploads:
    """Partial uploads by resource name."""

    def __init__(self, blobs: Blobs, clock: Callable[[], float]) -> None:
        self.blobs, self.clock = blobs, clock
        self._pending: collections.OrderedDict[str, Upload] = collections.OrderedDict()

    def committed(self, name: str) -> tuple[int, bool]:
        """How many bytes of an upload are kept, and whether the blob is complete."""
        blob = digests.parse_write(name)
        digest = re_pb2.Digest(hash=blob.hash, size_bytes=blob.size)
        if self.blobs.present(digest):
            return blob.size, True
        upload = self._pending.get(name)
        return (upload.committed if upload else 0), False

    def open(self, name: str, offset: int) -> Upload | None:
        """The upload to write at `offset`, or None when the blob is stored already."""
        blob = digests.parse_write(name)
        if self.blobs.present(re_pb2.Digest(hash=blob.hash, size_bytes=blob.size)):
            return None
        upload = self._pending.get(name)
        if upload is not None and offset == 0 and upload.committed:
            self.drop(name)  # the client starts over
            upload = None
        if upload is None:
            if offset != 0:
                raise BadRequest(f"write_offset {offset} of an upload that has 0 bytes")
            upload = Upload(blob, self.blobs.writer(), touched=self.clock())
            self._pending[name] = upload
            self._expire()
        if offset != upload.committed:
            raise BadRequest(f"write_offset {offset}, but {upload.committed} bytes are committed")
        self._pending.move_to_end(name)
        upload.touched = self.clock()
        return upload

    async def write(self, upload: Upload, data: bytes) -> None:
        """Append bytes; BadRequest past the blob's size."""
        if upload.committed + len(data) > upload.blob.size:
            raise BadRequest(f"more than the {upload.blob.size} bytes the resource name promised")
        await asyncio.to_thread(upload.writer.write, data)
        upload.committed += len(data)

    async def finish(self, name: str, upload: Upload) -> None:
        """Store the complete blob, its digest checked; the upload ends either way."""
        self._pending.pop(name, None)
        if upload.committed != upload.blob.size:
            upload.writer.discard()
            raise BadRequest(
                f"finished after {upload.committed} bytes of a blob of {upload.blob.size}"
            )
        await asyncio.to_thread(upload.writer.commit, upload.blob.hash)

    def drop(self, name: str) -> None:
        """Forget a partial upload."""
        upload = self._pending.pop(name, None)
        if upload is not None:
            upload.writer.discard()

    def _expire(self) -> None:
        now = self.clock()
        while self._pending:
            name, oldest = next(iter(self._pending.items()))
            if len(self._pending) <= MAX_PENDING and now - oldest.touched < PENDING_TTL_S:
                break
            self.drop(name)

    def close(self) -> None:
        """Drop every partial upload (shutdown)."""
        for name in list(self._pending):
            self.drop(name)
