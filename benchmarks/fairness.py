"""Fair share between tenants in the queue index (pure, in process: QueueIndex + FairShare).

Scenario 1: tenant A (weight 1) floods 20,000 jobs, then tenant B (weight 1)
submits 200. One worker, which can take every job, consumes one job at a time
until both are empty. `b_median_wait_dispatches` is the median, over B's jobs,
of the dispatches made after B's submission and before that job's (FIFO would
make it about 20,100; an even split about 200).

`share_error_pct` is the largest gap, in percentage points, between a tenant's
share of the dispatches and its weight share, over every sliding window of 100
consecutive dispatches during which both tenants had queued work.

Scenario 2: A (weight 3) and B (weight 1) flood 5,000 jobs each (A first);
`weighted_share_error_pct` is the same figure with a 75/25 weight share.

Jobs are spread over 10 tag sets and priority 0; the seed is fixed.
"""

from __future__ import annotations

import json
import random
import statistics

from o11n.core.matching import QueueIndex, ResourceKey, as_tags

SEED = 7
WINDOW = 100
POOLS = [f"pool-{n}" for n in range(10)]
WORKER_TAGS = as_tags({"os": "linux", "host": "bench-1", **{pool: "yes" for pool in POOLS}})
FREE: ResourceKey = (64.0, 2**40, 0)


def flood(index: QueueIndex, tenant: str, count: int, first_id: int, rng: random.Random) -> int:
    """Queue `count` jobs of `tenant` with ids from `first_id`; returns the next free id."""
    for job_id in range(first_id, first_id + count):
        tags = as_tags({"os": "linux", rng.choice(POOLS): "yes"})
        index.add(job_id, tenant, 0, tags, (1.0, 2**30, 0))
    return first_id + count


def drain(index: QueueIndex, tenants: tuple[str, str]) -> tuple[list[str], list[bool], list[int]]:
    """Consume until empty: who got each dispatch, whether both had work, the job ids."""
    who, both_busy, job_ids = [], [], []
    while len(index):
        queued = index.counts_by_tenant()
        both_busy.append(all(queued.get(t, 0) for t in tenants))
        match = index.consume(WORKER_TAGS, FREE)
        assert match is not None, "the worker can take every job"
        who.append(match.tenant)
        job_ids.append(match.job_id)
    return who, both_busy, job_ids


def share_error_pct(who: list[str], both_busy: list[bool], weights: dict[str, float]) -> float:
    """Largest gap between dispatch share and weight share, over windows with both busy."""
    total_weight = sum(weights.values())
    worst = 0.0
    for start in range(len(who) - WINDOW + 1):
        if not all(both_busy[start : start + WINDOW]):
            continue
        window = who[start : start + WINDOW]
        for tenant, weight in weights.items():
            gap = abs(window.count(tenant) / WINDOW - weight / total_weight)
            worst = max(worst, 100 * gap)
    return worst


def index_with(weights: dict[str, float]) -> QueueIndex:
    """An empty index with these tenant weights."""
    index = QueueIndex()
    for tenant, weight in weights.items():
        index.fairness.set_weight(tenant, weight)
    return index


def flood_then_trickle() -> dict[str, float]:
    """Scenario 1: A floods 20,000, then B submits 200; equal weights."""
    weights = {"a": 1.0, "b": 1.0}
    index, rng = index_with(weights), random.Random(SEED)
    next_id = flood(index, "a", 20_000, 1, rng)
    b_ids = set(range(next_id, flood(index, "b", 200, next_id, rng)))
    who, both_busy, job_ids = drain(index, ("a", "b"))
    b_waits = [position for position, job_id in enumerate(job_ids) if job_id in b_ids]
    assert len(b_waits) == len(b_ids), "every B job is dispatched once"
    return {
        "b_median_wait_dispatches": statistics.median(b_waits),
        "share_error_pct": round(share_error_pct(who, both_busy, weights), 2),
    }


def weighted_floods() -> dict[str, float]:
    """Scenario 2: A (weight 3) and B (weight 1) flood 5,000 each."""
    weights = {"a": 3.0, "b": 1.0}
    index, rng = index_with(weights), random.Random(SEED)
    flood(index, "b", 5_000, flood(index, "a", 5_000, 1, rng), rng)
    who, both_busy, _ = drain(index, ("a", "b"))
    return {"weighted_share_error_pct": round(share_error_pct(who, both_busy, weights), 2)}


def main() -> None:
    """Run both scenarios and print the figures as one JSON object."""
    print(json.dumps(flood_then_trickle() | weighted_floods()))


if __name__ == "__main__":
    main()
