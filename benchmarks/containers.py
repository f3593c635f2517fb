"""Container actions: warm containers with one exec each against one container per action.

Runs the worker's container runner directly against the engine it would use
(`$DOCKER_HOST`, else Docker's socket, else podman's, which `.ci/install-containers`
sets up) with the local registry's busybox image:

- `reuse_*` / `fresh_*`: 200 trivial actions (`true`) one after another, with
  warm container reuse on and off; each figure is the time from asking the
  runner to its result (work folder handed over, exec, the check that the job left
  no process, and for a fresh one create/start/remove).
- `pull_uncached_ms`: ensuring the image after removing it locally (a pull from
  127.0.0.1:5000); `pull_cached_ms`: ensuring it when present (a lookup).

Target (issue 7): reuse at least 4x faster per action than one container each.
Run: python -m benchmarks.containers
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from o11n.core.jobs import JobSpec
from o11n.worker.containers import ContainerConfig, ContainerRunner
from o11n.worker.executor import Attempt, Executor

IMAGE = "127.0.0.1:5000/o11n/busybox:1"
ACTIONS = 200


class Discard:
    async def write(self, stream: str, data: bytes) -> None:
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def actions(runner: ContainerRunner, work: Path) -> list[float]:
    executor = Executor(work, containers=runner)
    spec = JobSpec.model_validate({"command": ["true"], "image": IMAGE})
    times = []
    for i in range(ACTIONS):
        began = time.perf_counter()
        ended = await executor.run(
            Attempt(i + 1, 1, "bench", spec, "bench"), Discard(), asyncio.Event(), lambda _at: None
        )
        times.append((time.perf_counter() - began) * 1000)
        assert ended.exit_code == 0, ended
    return times


async def pulls(runner: ContainerRunner) -> tuple[float, float]:
    await asyncio.to_thread(runner.client.images.remove, IMAGE, force=True)
    began = time.perf_counter()
    await runner.ensure_image(IMAGE)
    uncached = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    await runner.ensure_image(IMAGE)
    return uncached, (time.perf_counter() - began) * 1000


async def main() -> dict[str, float]:
    config = ContainerConfig(docker_host=os.environ.get("DOCKER_HOST"), kill_grace=1)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="o11n-bench-") as tmp:
        for name, reuse in (("reuse", True), ("fresh", False)):
            runner = ContainerRunner(dataclasses.replace(config, reuse=reuse))
            try:
                if name == "reuse":
                    figures["pull_uncached_ms"], figures["pull_cached_ms"] = await pulls(runner)
                times = await actions(runner, Path(tmp) / name)
            finally:
                runner.close()
            figures[f"{name}_median_ms"] = round(statistics.median(times), 1)
            figures[f"{name}_p90_ms"] = round(percentile(times, 0.9), 1)
    figures["speedup"] = round(figures["fresh_median_ms"] / figures["reuse_median_ms"], 1)
    figures["pull_uncached_ms"] = round(figures["pull_uncached_ms"], 1)
    figures["pull_cached_ms"] = round(figures["pull_cached_ms"], 1)
    figures["cores"] = len(os.sched_getaffinity(0))
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
