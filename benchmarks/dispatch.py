"""Dispatch latency, throughput and memory of the in-memory queue index (no server, no I/O).

Jobs require one of 1,000 tag sets (arch: 2 values x os: 5 x group: 100) and
one of 16 resource shapes (cpu 1..4 x memory 1, 2, 4, 8 GiB). The index keys
buckets by (tags, resources), so up to 16,000 buckets result: about 970 are in
use at 1k queued jobs, 7,400 at 10k and all 16,000 at 100k. Jobs belong to 20
tenants with weights 1..4 cycling.

A fleet of 2,000 workers (every tag set twice) offers its tag set plus a `host`
tag unique to the worker, with free resources that fit any job. Each latency
sample is one `consume()` by a random worker, timed with perf_counter_ns; after
a consume that returns a job a new random job is added (outside the timed
call), so the index keeps its size. At 1k jobs (about one per tag set) about
half of the consumes find nothing for their worker; those misses are samples
too (stderr shows the hit rate). Each size is warmed up first, so every
worker's served-bucket set is already resolved: a worker's first consume,
which resolves it by scanning every bucket, is not measured.

`matches_per_s` is a loop of consumes by random workers on the 100k index
without refill (it drains to 80k), timed as a whole. `bytes_per_queued_job`
is the tracemalloc growth of an index built with 100k jobs inside the traced
window, divided by 100k. The seed is fixed.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import time
import tracemalloc

from o11n.core.matching import QueueIndex, ResourceKey, Tags, as_tags

SEED = 20240611
SIZES = (1_000, 10_000, 100_000)
TENANTS = [f"tenant-{n:02d}" for n in range(20)]
ARCHES = ("x86_64", "arm64")
OSES = ("ubuntu-22.04", "ubuntu-24.04", "debian-12", "macos-14", "windows-2022")
GROUPS = [f"group-{n:03d}" for n in range(100)]
CPUS = (1.0, 2.0, 3.0, 4.0)
MEMORIES = [gib * 2**30 for gib in (1, 2, 4, 8)]
GENEROUS: ResourceKey = (64.0, 256 * 2**30, 0)
WARMUP = 5_000
SAMPLES = 20_000
THROUGHPUT_CONSUMES = 20_000

Signature = dict[str, str]
SIGNATURES: list[Signature] = [
    {"arch": a, "os": o, "group": g} for a in ARCHES for o in OSES for g in GROUPS
]


class Jobs:
    """A source of random jobs with growing ids, as the scheduler would add them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 1

    def add_to(self, index: QueueIndex) -> None:
        """Queue one new random job (fresh tag set, as a submit would build it)."""
        rng = self.rng
        tags = as_tags(rng.choice(SIGNATURES))
        resources = (rng.choice(CPUS), rng.choice(MEMORIES), 0)
        index.add(self.next_id, rng.choice(TENANTS), 0, tags, resources)
        self.next_id += 1


def new_index() -> QueueIndex:
    """An empty index with the tenants' weights (1..4 cycling)."""
    index = QueueIndex()
    for n, tenant in enumerate(TENANTS):
        index.fairness.set_weight(tenant, 1 + n % 4)
    return index


def filled_index(size: int, jobs: Jobs) -> QueueIndex:
    """An index holding `size` random jobs."""
    index = new_index()
    for _ in range(size):
        jobs.add_to(index)
    return index


def fleet() -> list[Tags]:
    """The workers' tag sets: every job tag set twice, each with its own host tag."""
    workers = [{**sig, "host": f"host-{n:04d}"} for n, sig in enumerate(SIGNATURES * 2)]
    return [as_tags(worker) for worker in workers]


def consume_samples(
    index: QueueIndex, workers: list[Tags], jobs: Jobs, count: int
) -> tuple[list[int], int]:
    """Latency (ns) of `count` consumes by random workers, refilling after each match."""
    choose, clock = jobs.rng.choice, time.perf_counter_ns
    latencies, matched = [], 0
    for _ in range(count):
        worker = choose(workers)
        start = clock()
        match = index.consume(worker, GENEROUS)
        latencies.append(clock() - start)
        if match is not None:
            matched += 1
            jobs.add_to(index)
    return latencies, matched


def percentile_ms(latencies_ns: list[int], pct: float) -> float:
    """The nearest-rank percentile, in milliseconds."""
    ordered = sorted(latencies_ns)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank] / 1e6


def warm_up(index: QueueIndex, workers: list[Tags], jobs: Jobs) -> None:
    """One consume by every worker (resolving its buckets), then random consumes."""
    for worker in workers:
        if index.consume(worker, GENEROUS) is not None:
            jobs.add_to(index)
    consume_samples(index, workers, jobs, WARMUP)


def latency_at(size: int, workers: list[Tags]) -> dict[str, float]:
    """p50 and p99 consume latency with `size` jobs queued."""
    jobs = Jobs(random.Random(SEED + size))
    index = filled_index(size, jobs)
    warm_up(index, workers, jobs)
    gc.collect()
    latencies, matched = consume_samples(index, workers, jobs, SAMPLES)
    assert len(index) == size, "refill must keep the index size constant"
    label = f"{size // 1000}k"
    print(f"{label}: {matched / SAMPLES:.0%} of consumes found a job", file=sys.stderr)
    return {
        f"consume_p50_ms_{label}": round(percentile_ms(latencies, 50), 4),
        f"consume_p99_ms_{label}": round(percentile_ms(latencies, 99), 4),
    }


def matches_per_second(workers: list[Tags]) -> float:
    """Consumes that return a job per second, on the 100k index, without refill."""
    jobs = Jobs(random.Random(SEED))
    index = filled_index(SIZES[-1], jobs)
    warm_up(index, workers, jobs)
    picks = [jobs.rng.choice(workers) for _ in range(THROUGHPUT_CONSUMES)]
    gc.collect()
    start = time.perf_counter()
    matched = sum(index.consume(worker, GENEROUS) is not None for worker in picks)
    return matched / (time.perf_counter() - start)


def bytes_per_job() -> float:
    """Traced memory of an index with 100k jobs, less an empty index's, per job."""
    gc.collect()
    tracemalloc.start()
    index = new_index()
    empty, _ = tracemalloc.get_traced_memory()
    jobs = Jobs(random.Random(SEED))
    for _ in range(SIZES[-1]):
        jobs.add_to(index)
    del jobs
    gc.collect()
    full, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (full - empty) / len(index)


def main() -> None:
    """Run every measurement and print the figures as one JSON object."""
    workers = fleet()
    figures: dict[str, float | int] = {}
    for size in SIZES:
        figures.update(latency_at(size, workers))
    figures["matches_per_s"] = round(matches_per_second(workers))
    figures["bytes_per_queued_job"] = round(bytes_per_job())
    figures["cores"] = os.cpu_count() or 1
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
