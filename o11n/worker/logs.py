"""Shipping an attempt's stdout and stderr to the scheduler while it runs.

Output is buffered and sent in batches, by size or after a short delay. Each
chunk gets the next sequence number of its attempt before it is first sent, and
keeps it across retries, so the scheduler stores every chunk once and in order.
When the scheduler falls behind, `write` waits: the job is slowed, never its
output lost.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from o11n.errors import Conflict
from o11n.worker.api import WorkerApi

log = logging.getLogger(__name__)
CHUNK_CHARS = 256 * 1024  # well under the API's 1 MiB per chunk
REQUEST_CHUNKS = 4  # 1 MiB per request: one log write never holds the writer up long
FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 0.2
MAX_BUFFER = 16 * 1024 * 1024


@dataclass
class _Pending:
    stream: str
    text: list[str] = field(default_factory=list)
    size: int = 0


class LogShipper:
    """Buffers one attempt's output and sends it in order; `close()` sends the rest."""

    def __init__(self, api: WorkerApi, job_id: int, attempt: int, lease_id: str) -> None:
        self._api, self._path = api, f"/api/v1/jobs/{job_id}/attempts/{attempt}/logs"
        self._lease_id = lease_id
        self._decoders = {
            s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")
        }
        self._pending: list[_Pending] = []
        self._buffered = 0
        self._seq = 0
        self._kick = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self.lost = False  # the lease is gone: output is dropped
        self._task = asyncio.create_task(self._run())

    async def write(self, stream: str, data: bytes, final: bool = False) -> None:
        """Queue output of one stream; waits while too much is unsent."""
        text = self._decoders[stream].decode(data, final=final)
        if text and not self.lost:
            self._append(stream, text)
        if self._buffered >= FLUSH_BYTES:
            self._kick.set()
        while self._buffered >= MAX_BUFFER and not self.lost:
            self._drained.clear()
            self._kick.set()
            await self._drained.wait()

    async def close(self) -> None:
        """Send everything written so far, then stop."""
        for stream in ("stdout", "stderr"):
            await self.write(stream, b"", final=True)
        self._closing = True
        self._kick.set()
        await self._task

    def _append(self, stream: str, text: str) -> None:
        last = self._pending[-1] if self._pending else None
        if last is None or last.stream != stream or last.size >= CHUNK_CHARS:
            last = _Pending(stream)
            self._pending.append(last)
        last.text.append(text)
        last.size += len(text)
        self._buffered += len(text)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), FLUSH_SECONDS)
            self._kick.clear()
            closing = self._closing
            while self._pending and not self.lost:
                await self._send(self._take())
            self._drained.set()
            if closing:
                return

    def _take(self) -> list[dict[str, Any]]:
        batch, self._pending = self._pending[:REQUEST_CHUNKS], self._pending[REQUEST_CHUNKS:]
        chunks = []
        for pending in batch:
            text = "".join(pending.text)
            for start in range(0, len(text), CHUNK_CHARS):
                chunks.append(
                    {
                        "seq": self._seq,
                        "stream": pending.stream,
                        "data": text[start : start + CHUNK_CHARS],
                    }
                )
                self._seq += 1
            self._buffered -= pending.size
        return chunks

    async def _send(self, chunks: list[dict[str, Any]]) -> None:
        try:
            await self._api.call(self._path, {"lease_id": self._lease_id, "chunks": chunks})
        except Conflict:
            log.info("log of %s dropped: the attempt lost its lease", self._path)
            self.lost = True
