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

import httpx

from o11n.client import RETRY_STATUS, Backoff, raise_for
from o11n.errors import NotRegistered

log = logging.getLogger(__name__)
LONG_POLL_SLACK = 30.0  # seconds a long-poll may take beyond what it asked for


class WorkerApi:
    """An HTTP connection to the scheduler for one worker."""

    def __init__(self, server: str, token: str | None, backoff: Backoff | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.backoff = backoff or Backoff(base=0.05, cap=2.0)
        self.on_unregistered: Callable[[], Awaitable[None]] | None = None
        self._http = httpx.AsyncClient(
            base_url=self.server,
            headers=headers,
            timeout=httpx.Timeout(15.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def call(self, path: str, body: Any, *, wait: float = 0.0) -> Any:
        """POST `body` to `path`, retrying until the scheduler takes it; the decoded answer.

        Error answers other than 'retry later' raise their o11n error (a 409, for
        one, means the attempt's lease is gone).
        """
        content = json.dumps(body)
        timeout = httpx.Timeout(15.0, read=wait + LONG_POLL_SLACK) if wait else None
        failures = 0
        while True:
            response = await self._post(path, content, timeout)
            if response is not None and response.status_code not in RETRY_STATUS:
                try:
                    if response.status_code >= 400:
                        raise_for(response)
                except NotRegistered:
                    if self.on_unregistered is None:
                        raise
                    await self.on_unregistered()
                    continue
                return response.json()
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("scheduler at %s unavailable (try %d); retrying", self.server, failures)
            await asyncio.sleep(self.backoff.delay(min(failures, 20)))

    async def _post(
        self, path: str, content: str, timeout: httpx.Timeout | None
    ) -> httpx.Response | None:
        try:
            return await self._http.post(
                path,
                content=content,
                headers={"Content-Type": "application/json"},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            log.debug("POST %s failed: %s", path, exc)
            return None
