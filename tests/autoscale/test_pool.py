"""The autoscaler's control loop after a scheduler restart, on a real scheduler (SQLite)
and the Kubernetes provider against FakeKubernetesApi, a fake API server (no cluster can
run on our machines): the Pods an earlier run started are adopted, stopped when idle,
and new workers are named after them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from o11n.autoscale.catalog import parse_catalog
from o11n.autoscale.kubernetes import KubernetesProvider
from o11n.autoscale.pool import ElasticPool
from o11n.core.capacity import Launch
from o11n.core.jobs import JobSpec
from o11n.scheduler.auth import Principal
from o11n.scheduler.service import Scheduler
from o11n.store.database import Database
from tests.autoscale.fake_kube import FakeKubernetesApi
from tests.autoscale.test_kubernetes import SETTINGS, placed
from tests.clock import Clock

CATALOG = parse_catalog("""
currency: CNY
autoscale:
  scale_up_after: 0s
  idle_ttl: 60s
  min_workers: 0
  max_workers: 4
  spot_strategy: follow_market
  spot_duration: 0s
types:
  - {name: t.small, cpu: 2, memory: 4G, price: 1.0, spot_price: 0.2, tags: {pool: elastic}}
""")
ELASTIC = {"pool": "elastic", "arch": "x86_64", "os": "linux"}
SMALL = (2.0, 4 * 2**30, 0)


@pytest.fixture
def clock() -> Clock:
    return Clock(10_000.0)


@pytest.fixture
async def sched(tmp_path: Path, clock: Clock) -> AsyncIterator[Scheduler]:
    db = Database(f"sqlite:///{tmp_path / 'o11n.db'}")
    scheduler = Scheduler(db, "admin-secret", clock=clock, reap_interval=3600)
    await scheduler.start()
    yield scheduler
    await scheduler.stop()
    db.close()


@pytest.fixture
def kube() -> Iterator[tuple[FakeKubernetesApi, k8s.ApiClient]]:
    with FakeKubernetesApi() as fake:
        client = k8s.ApiClient(k8s.Configuration(host=fake.url))
        fake.on_create = placed("t.small")
        yield fake, client
        client.close()


def provider(client: k8s.ApiClient, clock: Clock) -> KubernetesProvider:
    fast = replace(SETTINGS, placement_timeout_s=0.5, poll_interval_s=0.02)
    return KubernetesProvider(fast, client, clock=clock)


async def settle(pool: ElasticPool) -> None:
    """Let the launches and stops a round spawned finish."""
    while pool._work:
        await asyncio.gather(*pool._work)


async def test_a_restarted_scheduler_adopts_its_pods_stops_them_idle_and_names_after_them(
    sched: Scheduler, kube: tuple[FakeKubernetesApi, Any], clock: Clock
) -> None:
    fake, client = kube
    earlier = provider(client, clock)
    launch = Launch(CATALOG.types, "follow_market", spot_duration_s=0)
    for worker in ("elastic-1", "elastic-2"):
        await earlier.start(launch, worker)

    clock.now += 300  # the scheduler restarts: a new pool, a new provider
    pool = ElasticPool(sched, CATALOG, provider(client, clock), clock=clock)
    await pool.adopt()
    assert sorted(i.worker for i in pool.live()) == ["elastic-1", "elastic-2"]
    adopted = [e for e in pool.events if e.kind == "adopted"]
    assert [e.reason for e in adopted] == ["started 300s ago by an earlier run"] * 2

    # elastic-1's worker comes back and stays idle past idle_ttl: the Pod is deleted
    await sched.register("elastic-1", ELASTIC, SMALL)
    await pool.tick()
    clock.now += 61
    await sched.heartbeat("elastic-1", [])
    await pool.tick()
    await settle(pool)
    assert ("ci", "o11n-elastic-1") not in fake.pods
    assert [i.worker for i in pool.live()] == ["elastic-2"]

    # elastic-1's worker drains (its Pod got SIGTERM); two demands, one more than the
    # booting elastic-2 covers: the new worker is elastic-3
    await sched.heartbeat("elastic-1", [], draining=True)
    specs = [
        JobSpec(command=["true"], tags={"pool": "elastic"}, resources={"cpu": cpu})
        for cpu in (1, 2)
    ]
    await sched.submit(Principal("admin"), specs)
    await pool.tick()
    await settle(pool)
    assert sorted(i.worker for i in pool.live()) == ["elastic-2", "elastic-3"]
    assert ("ci", "o11n-elastic-3") in fake.pods
    assert not [e for e in pool.events if e.kind == "error"]
