"""The event hub: committed job events and log chunks, fanned out to watchers and listeners."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from o11n.core.jobs import Event

Message = dict[str, Any]
Listener = Callable[[Event], None]
QUEUE_LIMIT = 10_000


class Subscription:
    """A watcher's queue; `overflowed` is set if it fell too far behind and was cut off."""

    def __init__(self, job_id: int | None, tenant: str | None) -> None:
        self.job_id = job_id
        self.tenant = tenant
        self.queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, message: Message) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True


class EventHub:
    """Publishes to subscriptions by job, by tenant, or for everything (tenant None)."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._by_job: dict[int, set[Subscription]] = {}
        self._listeners: list[Listener] = []

    def close(self) -> None:
        """Tell every watcher the stream ends here (the server is stopping)."""
        for sub in [*self._subs, *(s for subs in self._by_job.values() for s in subs)]:
            sub.offer({"type": "closing"})

    def listen(self, listener: Listener) -> None:
        """Call `listener` with every event (metrics, reports)."""
        self._listeners.append(listener)

    def subscribe(self, *, job_id: int | None = None, tenant: str | None = None) -> Subscription:
        """Watch one job, or all jobs of a tenant, or everything."""
        sub = Subscription(job_id, tenant)
        if job_id is not None:
            self._by_job.setdefault(job_id, set()).add(sub)
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop a watch."""
        if sub.job_id is not None:
            subs = self._by_job.get(sub.job_id, set())
            subs.discard(sub)
            if not subs:
                self._by_job.pop(sub.job_id, None)
        else:
            self._subs.discard(sub)

    def publish(self, event: Event) -> None:
        """Deliver a committed event."""
        for listener in self._listeners:
            listener(event)
        watchers = self._watchers(event.job_id, event.tenant)
        if watchers:
            message = {"type": "event", **event.model_dump()}
            for sub in watchers:
                sub.offer(message)

    def publish_log(self, job_id: int, tenant: str, message: Message) -> None:
        """Deliver a stored log chunk to the job's watchers and its tenant's."""
        for sub in self._watchers(job_id, tenant):
            sub.offer(message)

    def _watchers(self, job_id: int, tenant: str) -> list[Subscription]:
        found = list(self._by_job.get(job_id, ()))
        found += [s for s in self._subs if s.tenant is None or s.tenant == tenant]
        return found
