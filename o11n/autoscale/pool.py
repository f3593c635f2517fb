"""The autoscaler's control loop in the scheduler: it looks at demand no live worker can
serve, asks the policy (`o11n.core.autoscale`) what to do, and has a provider start and
stop workers; it also turns a provider's reclaimed instances into lost attempts.

Every decision is an event with its reason, kept in memory (the last 1,000) and logged:
`o11n autoscale events`. Workers it starts are named `PREFIX-N` and get the agent
attribute `price` (their hourly price) once they register, which is what cost reports
charge. At start it adopts the instances its provider still runs for an earlier run of
the scheduler: they count against the caps and are stopped when idle like the others,
and new names continue after theirs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from o11n.autoscale.catalog import Catalog
from o11n.autoscale.providers import Provider
from o11n.core.autoscale import AutoscaleConfig, Autoscaler, Demand, Running
from o11n.core.capacity import Instance, Launch, OutOfStock
from o11n.core.matching import Bucket, fits
from o11n.scheduler.service import Scheduler
from o11n.scheduler.workers import WorkerState

log = logging.getLogger(__name__)
KEEP_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """One decision or happening, with its reason."""

    at: float
    kind: str  # config, adopted, started, out_of_stock, held, stop, reclaimed, registered, error
    reason: str
    worker: str | None = None
    instance_type: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "reason": self.reason,
            "worker": self.worker,
            "instance_type": self.instance_type,
        }


class ElasticPool:
    """Workers on demand from a catalog of instance types, through one provider."""

    def __init__(
        self,
        sched: Scheduler,
        catalog: Catalog,
        provider: Provider,
        config: AutoscaleConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        interval: float = 1.0,
        prefix: str = "elastic",
    ) -> None:
        self.sched, self.catalog, self.provider = sched, catalog, provider
        self.config = config or catalog.autoscale or AutoscaleConfig()
        self.policy = Autoscaler(self.config)
        self.clock = clock or sched.clock
        self.interval, self.prefix = interval, prefix
        self.instances: dict[str, Instance] = {}
        self.pending: list[Launch] = []
        self.events: collections.deque[PoolEvent] = collections.deque(maxlen=KEEP_EVENTS)
        self.interruptions = 0
        self._waiting: dict[tuple[Any, ...], float] = {}
        self._idle_since: dict[str, float] = {}
        self._priced: set[str] = set()
        self._held: dict[str, str] = {}
        self._started = 0
        self._task: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[None]] = set()
        self._epoch = self.clock()

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what an earlier run started, then run the loop every `interval` seconds."""
        self._note(
            "config",
            f"min {self.config.min_workers}, max {self.config.max_workers} workers, "
            f"idle_ttl {self.config.idle_ttl_s:g}s, {len(self.catalog.types)} types",
        )
        await self.adopt()
        self._task = asyncio.create_task(self._forever())

    async def adopt(self) -> None:
        """Take over the instances the provider runs for an earlier run of the scheduler."""
        try:
            found = await self.provider.existing(self.catalog.at(self.clock() - self._epoch))
        except Exception as exc:
            log.exception("listing the provider's instances failed")
            self._note("error", f"cannot list the provider's instances to adopt: {exc}")
            return
        for instance in found:
            if instance.worker in self.instances:
                continue
            self.instances[instance.worker] = instance
            self._started = max(self._started, _number(instance.worker, self.prefix))
            age = self.clock() - instance.started_at
            self._note("adopted", f"started {age:.0f}s ago by an earlier run", instance)

    async def stop(self) -> None:
        """Stop the loop, then every instance it started."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*self._work, return_exceptions=True)
        for instance in list(self.live()):
            await self.provider.stop(instance)
            instance.stopped_at = self.clock()

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("autoscaler round failed; trying again")
            await asyncio.sleep(self.interval)

    def live(self) -> list[Instance]:
        """Instances not stopped."""
        return [i for i in self.instances.values() if i.stopped_at is None]

    # -- one round ---------------------------------------------------------------

    async def tick(self) -> None:
        """Reclaims, then the policy's launches and stops for this moment."""
        now = self.clock()
        await self._take_back(now)
        self._price_new_workers()
        running = [self._running(i, now) for i in self.live()]
        types = self.catalog.at(now - self._epoch)
        decisions = self.policy.decide(self._demands(now), running, types, self.pending, now)
        for launch in decisions.launches:
            self.pending.append(launch)
            self._spawn(self._launch(launch))
        for stop in decisions.stops:
            stop.instance.stopped_at = now
            self._note("stop", stop.reason, stop.instance)
            self._spawn(self.provider.stop(stop.instance))
        for held in decisions.held:
            if self._held.get(held.demand.key) != held.reason:
                self._held[held.demand.key] = held.reason
                self._note("held", f"{held.demand.key}: {held.reason}")

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def _demands(self, now: float) -> list[Demand]:
        """Queued requirement signatures that no live worker could ever take."""
        workers = [w for w in self.sched.workers.values() if self._usable(w)]
        found, seen = [], set()
        for bucket, count in self.sched.index.demand():
            if any(bucket.serves(w.tags) and fits(bucket.resources, w.capacity) for w in workers):
                continue
            key = (bucket.tags, bucket.resources)
            seen.add(key)
            since = self._waiting.setdefault(key, now)
            found.append(_demand(bucket, count, since))
        self._waiting = {k: v for k, v in self._waiting.items() if k in seen}
        return found

    def _usable(self, worker: WorkerState) -> bool:
        return self.sched.is_online(worker) and not worker.draining and not worker.disabled

    def _running(self, instance: Instance, now: float) -> Running:
        worker = self.sched.workers.get(instance.worker)
        if worker is None or not self.sched.is_online(worker):
            return Running(instance, booting=True)
        if self.sched.leases.of_worker(instance.worker):
            self._idle_since.pop(instance.worker, None)
            return Running(instance)
        return Running(instance, idle_since=self._idle_since.setdefault(instance.worker, now))

    async def _launch(self, launch: Launch) -> None:
        self._started += 1
        worker = f"{self.prefix}-{self._started}"
        await self.sched.unbind(worker)  # a new worker: a gone one's token may not be its
        try:
            instance = await self.provider.start(launch, worker)
        except OutOfStock as exc:
            for kind in launch.candidates:
                self.policy.note_out_of_stock(kind.name, None, self.clock())
            self._note("out_of_stock", f"{exc}; {launch.reason}")
            return
        except Exception as exc:
            log.exception("starting %s failed", worker)
            self._note("error", f"cannot start {worker}: {exc}")
            return
        finally:
            self.pending.remove(launch)
        self.instances[worker] = instance
        price = f"{instance.hourly_price:g}/h {'spot' if instance.spot else 'on demand'}"
        self._note(
            "started",
            f"{instance.type.name} in {instance.zone} at {price}: {launch.reason}",
            instance,
        )

    def _price_new_workers(self) -> None:
        """Give each started worker, once registered, its `price` attribute."""
        for instance in self.live():
            if instance.worker not in self._priced and instance.worker in self.sched.agents:
                self._priced.add(instance.worker)
                self._spawn(self._set_price(instance))

    async def _set_price(self, instance: Instance) -> None:
        await self.sched.set_attribute([instance.worker], "price", instance.hourly_price)
        self._note("registered", "its worker registered", instance)

    async def _take_back(self, now: float) -> None:
        """Instances the provider says are gone: their attempts are lost at once."""
        for instance_id in await self.provider.reclaimed():
            instance = self.instances.get(instance_id)
            if instance is None or instance.stopped_at is not None:
                continue
            instance.stopped_at, instance.reclaimed = now, True
            self.interruptions += 1
            lost = await self.sched.lose_worker(instance.worker, "spot instance reclaimed")
            self._note(
                "reclaimed", f"the provider took it back; {lost} attempt(s) requeued", instance
            )

    def _note(self, kind: str, reason: str, instance: Instance | None = None) -> None:
        event = PoolEvent(
            self.clock(),
            kind,
            reason,
            instance.worker if instance else None,
            instance.type.name if instance else None,
        )
        self.events.append(event)
        log.info("autoscale %s %s: %s", kind, event.worker or "", reason)

    def status(self) -> dict[str, Any]:
        """The instances and counters, for the API."""
        return {
            "instances": [_instance_json(i) for i in self.instances.values()],
            "interruptions": self.interruptions,
            "pending": len(self.pending),
            "currency": self.catalog.currency,
        }


def _number(worker: str, prefix: str) -> int:
    """N of a worker named PREFIX-N; 0 for any other name."""
    head, _, number = worker.rpartition("-")
    return int(number) if head == prefix and number.isdigit() else 0


def _demand(bucket: Bucket, count: int, since: float) -> Demand:
    cpu, memory, gpu = bucket.resources
    tags = dict(bucket.tags)
    return Demand(
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        tags=tags,
        waiting_since=since,
        key=f"{count} queued job(s) needing cpu={cpu:g}"
        + (f" tags {','.join(f'{k}={v}' for k, v in sorted(tags.items()))}" if tags else ""),
    )


def _instance_json(instance: Instance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "worker": instance.worker,
        "type": instance.type.name,
        "zone": instance.zone,
        "spot": instance.spot,
        "hourly_price": instance.hourly_price,
        "started_at": instance.started_at,
        "protected_until": instance.protected_until,
        "stopped_at": instance.stopped_at,
        "reclaimed": instance.reclaimed,
    }
