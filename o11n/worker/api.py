"""The worker's side of the scheduler API: every call retries until the scheduler answers.

A worker must outlive scheduler restarts: transport errors and 502/503/504 are
retried forever with back-off and jitter, and when the scheduler has forgotten
the worker (it restarted) the worker registers again and the call is repeated.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from o11n.client import RETRY_STATUS, Backoff, error_for
from o11n.errors import NotRegistered

log = logging.getLogger(__name__)
LONG_POLL_SLACK = 30.0  # seconds a long-poll may take beyond what it asked for
TIMEOUT = 15.0


class WorkerApi:
    """An HTTP connection to the scheduler for one worker (aiohttp: a quarter of httpx's
    CPU per request, which a worker making two requests per job notices)."""

    def __init__(self, server: str, token: str | None, backoff: Backoff | None = None) -> None:
        self.server = server.rstrip("/")
        self.backoff = backoff or Backoff(base=0.05, cap=2.0)
        self.on_unregistered: Callable[[], Awaitable[None]] | None = None
        self._headers = {"Content-Type": "application/json"}
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

    async def _register_again(self) -> None:
        """One registration, however many calls found the worker forgotten at once."""
        if self.on_unregistered is None:
            raise NotRegistered("the scheduler does not know this worker")
        if self._registering is None or self._registering.done():
            self._registering = asyncio.ensure_future(self.on_unregistered())
        await asyncio.shield(self._registering)

    async def _post(
        self, path: str, content: str, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, bytes] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(limit=32)
            )
        try:
            async with self._session.post(self.server + path, data=content, timeout=timeout) as r:
                return r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("POST %s failed: %s", path, exc)
            return None
