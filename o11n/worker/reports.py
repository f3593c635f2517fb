"""Reporting attempts' starts and results in batches: one request carries many.

While one report request is on its way, everything that happens meanwhile
collects for the next, so a busy worker sends few requests and an idle one
reports at once. A start and a result of the same attempt that wait together
travel as one entry. A result is reported before its attempt is forgotten, so
its lease is heartbeated until the scheduler has the result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from o11n.worker.api import WorkerApi
from o11n.worker.executor import Ended

log = logging.getLogger(__name__)
MAX_BATCH = 1024
START_DELAY = 0.5  # seconds; a job that ends sooner reports its start with its result


class Held(Protocol):
    job_id: int
    attempt: int
    lease_id: str


class Reporter:
    """Sends starts and results of attempts, batched, in the order they happened."""

    def __init__(
        self,
        api: WorkerApi,
        worker: str,
        on_refused: Callable[[int], None],
        on_grant: Callable[[dict[str, Any]], None],
        room: Callable[[], int],
    ) -> None:
        self._api, self._path = api, f"/api/v1/workers/{worker}/reports"
        self._on_refused, self._on_grant, self._room = on_refused, on_grant, room
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}
        self._waiters: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self, held: Held, at: float) -> None:
        """The attempt's command has started (told a moment later: a short job's start
        then travels with its result, as one entry)."""
        self._entry(held)["started_at"] = at
        asyncio.get_running_loop().call_later(START_DELAY, self._kick.set)

    async def finished(self, held: Held, ended: Ended) -> None:
        """The attempt has ended; returns once the scheduler has the result."""
        self._entry(held)["result"] = {
            "exit_code": ended.exit_code,
            "signal": ended.signal,
            "kind": ended.kind,
            "reason": ended.reason,
            "started_at": ended.started_at,
            "outputs": ended.outputs,
        }
        done = asyncio.get_running_loop().create_future()
        self._waiters[(held.job_id, held.attempt)] = done
        self._kick.set()
        await done

    async def flush(self) -> None:
        """Wait until everything reported so far has been sent."""
        while self._pending or not self._idle.is_set():
            self._kick.set()
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        """Send batches until cancelled."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._pending:
                self._idle.clear()
                await self._send(self._take())
            self._idle.set()

    def _entry(self, held: Held) -> dict[str, Any]:
        key = (held.job_id, held.attempt)
        entry = self._pending.get(key)
        if entry is None:
            entry = {"job_id": held.job_id, "attempt": held.attempt, "lease_id": held.lease_id}
            self._pending[key] = entry
        return entry

    def _take(self) -> list[dict[str, Any]]:
        keys = list(self._pending)[:MAX_BATCH]
        return [self._pending.pop(key) for key in keys]

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        ended = sum(1 for entry in batch if "result" in entry)
        body = {"reports": batch, "max_jobs": self._room() if ended else 0}
        answer = await self._api.call(self._path, body)
        for grant in answer.get("jobs", []):
            self._on_grant(grant)  # the room the ended attempts freed, filled at once
        for entry, result in zip(batch, answer["results"], strict=True):
            if not result["ok"]:
                log.info("report on job %s refused: %s", entry["job_id"], result["message"])
                self._on_refused(entry["job_id"])
            if "result" in entry:
                waiter = self._waiters.pop((entry["job_id"], entry["attempt"]), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
