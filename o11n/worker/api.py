"""The worker's side of the scheduler API: every call retries until the scheduler answers.

A worker must outlive scheduler restarts: transport errors and 502/503/504 are
retried forever with back-off and jitter, and when the scheduler has forgotten
the worker (it restarted) the worker registers again and the call is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from o11n.client import RETRY_STATUS, Backoff, error_for
from o11n.errors import BadRequest, NotRegistered

log = logging.getLogger(__name__)
JSON = {"Content-Type": "application/json"}
BLOB_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
LONG_POLL_SLACK = 30.0  # seconds a long-poll may take beyond what it asked for
TIMEOUT = 15.0


class WorkerApi:
    """An HTTP connection to the scheduler for one worker (aiohttp: a quarter of httpx's
    CPU per request, which a worker making two requests per job notices)."""

    def __init__(self, server: str, token: str | None, backoff: Backoff | None = None) -> None:
        self.server = server.rstrip("/")
        self.backoff = backoff or Backoff(base=0.05, cap=2.0)
        self.on_unregistered: Callable[[], Awaitable[None]] | None = None
        self.on_refused: Callable[[], None] | None = None  # no scheduler listens
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None
        self._registering: asyncio.Future[None] | None = None

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def call(
        self, path: str, body: Any, *, wait: float = 0.0, register_again: bool = True
    ) -> Any:
        """POST `body` to `path`, retrying until the scheduler takes it; the decoded answer.

        Error answers other than 'retry later' raise their o11n error (a 409, for
        one, means the attempt's lease is gone).
        """
        content = json.dumps(body)
        timeout = aiohttp.ClientTimeout(total=wait + LONG_POLL_SLACK if wait else TIMEOUT)
        failures = 0
        while True:
            answer = await self._post(path, content, timeout)
            if answer is not None and answer[0] not in RETRY_STATUS:
                status, data = answer
                if status < 400:
                    return json.loads(data)
                error = error_for(status, data)
                if not isinstance(error, NotRegistered) or not register_again:
                    raise error
                await self._register_again()
                continue
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("scheduler at %s unavailable (try %d); retrying", self.server, failures)
            await asyncio.sleep(self.backoff.delay(min(failures, 20)))

    async def get_blob(self, digest: str, dest: Path) -> None:
        """Download a blob of the content-addressed store to `dest` (written whole, then
        renamed into place, and checked against its digest)."""
        url = f"{self.server}/api/v1/cas/blobs/{digest}"
        part = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.part")
        failures = 0
        while True:
            try:
                async with self._client().get(url, timeout=BLOB_TIMEOUT) as r:
                    if r.status < 400:
                        hashed = hashlib.sha256()
                        with part.open("wb") as f:
                            async for chunk in r.content.iter_chunked(1024 * 1024):
                                hashed.update(chunk)
                                f.write(chunk)
                        if hashed.hexdigest() != digest:
                            raise BadRequest(f"blob {digest} arrived with another digest")
                        part.rename(dest)
                        return
                    if r.status not in RETRY_STATUS:
                        raise error_for(r.status, await r.read())
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.debug("GET %s failed: %s", url, exc)
            finally:
                part.unlink(missing_ok=True)
            failures += 1
            await asyncio.sleep(self.backoff.delay(min(failures, 20)))

    async def put_blob(self, digest: str, source: Path | bytes) -> None:
        """Upload a file (or bytes) to the content-addressed store as the blob `digest`."""
        url = f"{self.server}/api/v1/cas/blobs/{digest}"
        failures = 0
        while True:
            try:
                with contextlib.ExitStack() as stack:
                    data = (
                        source
                        if isinstance(source, bytes)
                        else stack.enter_context(source.open("rb"))
                    )
                    async with self._client().put(url, data=data, timeout=BLOB_TIMEOUT) as r:
                        if r.status < 400:
                            return
                        if r.status not in RETRY_STATUS:
                            raise error_for(r.status, await r.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("PUT %s failed: %s", url, exc)
            failures += 1
            await asyncio.sleep(self.backoff.delay(min(failures, 20)))

    async def _register_again(self) -> None:
        """One registration, however many calls found the worker forgotten at once."""
        if self.on_unregistered is None:
            raise NotRegistered("the scheduler does not know this worker")
        if self._registering is None or self._registering.done():
            self._registering = asyncio.ensure_future(self.on_unregistered())
        await asyncio.shield(self._registering)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(limit=32)
            )
        return self._session

    async def _post(
        self, path: str, content: str, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, bytes] | None:
        try:
            async with self._client().post(
                self.server + path, data=content, timeout=timeout, headers=JSON
            ) as r:
                return r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("POST %s failed: %s", path, exc)
            refused = isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
                exc.os_error, ConnectionRefusedError
            )
            if refused and self.on_refused is not None:
                self.on_refused()
            return None
