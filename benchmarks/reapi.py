"""Bazel against o11n's Remote Execution API: 200 small independent genrules.

Starts `o11n server --reapi-port` (SQLite) and two `o11n worker`s on this machine, as
the e2e benchmark does, and Bazel 2.1.0 (`.ci/install-reapi-clients`), each build in
its own output root with the Bazel server started beforehand (its start-up is not
timed). A fresh salt makes every action new to the server.

- `local_s`: Bazel's own local execution of the workspace (its sandbox).
- `cold_s`: the same workspace remotely (`--remote_executor`, `--jobs=16`): every
  action is uploaded, queued, leased, run by a worker and its outputs downloaded.
- `warm_s`: after `bazel clean`, the remote build again: every action is served from
  o11n's action cache (`warm_cache_hit_rate` of them).
- `actions_per_s`: actions over `cold_s`; `remote_overhead_ms_per_action`: what a
  remote action costs beyond a local one, (cold_s - local_s) / actions.

Run: python -m benchmarks.reapi
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from benchmarks.e2e import start_workers, wait_workers
from benchmarks.submit import free_port, running_server
from o11n.client import Client
from tests.e2e.bazel_tools import (
    BazelClient,
    bazel_21,
    parse_process_summary,
    remote_flags,
    write_workspace,
)

ACTIONS = 200
REMOTE_JOBS = 16


def wait_grpc(port: int, timeout: float = 30.0) -> None:
    """Return once the REAPI port accepts a connection."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)


def timed_build(client: BazelClient, *flags: str) -> tuple[float, str]:
    client.info("release")  # the Bazel server is up before the clock starts
    started = time.perf_counter()
    result = client.build(*flags, timeout=1800)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"bazel build failed: {result.stderr[-3000:]}")
    return elapsed, result.stderr


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="o11n-bench-reapi-") as tmp:
        root = Path(tmp)
        salt = uuid.uuid4().hex[:8]
        workspace = write_workspace(
            root / "ws", ACTIONS, chained=False, from_source=False, salt=salt
        )
        with BazelClient(bazel_21(), workspace.root, root / "local-root") as local:
            local_s, _ = timed_build(local)
        reapi_port = free_port()
        data = root / "data"
        with running_server(data, "--reapi-port", str(reapi_port)) as (port, token, _pid):
            workers = start_workers(port, token, data)
            try:
                with Client(f"http://127.0.0.1:{port}", token) as client:
                    wait_workers(client, 2)
                wait_grpc(reapi_port)
                flags = remote_flags(reapi_port, jobs=REMOTE_JOBS)
                with BazelClient(bazel_21(), workspace.root, root / "remote-root") as remote:
                    cold_s, cold_log = timed_build(remote, *flags)
                    remote.clean()
                    warm_s, warm_log = timed_build(remote, *flags)
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(30)
    cold, warm = parse_process_summary(cold_log), parse_process_summary(warm_log)
    figures = {
        "actions": ACTIONS,
        "cores": os.cpu_count(),
        "local_s": round(local_s, 2),
        "cold_s": round(cold_s, 2),
        "warm_s": round(warm_s, 2),
        "actions_per_s": round(ACTIONS / cold_s, 1),
        "remote_overhead_ms_per_action": round((cold_s - local_s) / ACTIONS * 1000, 1),
        "warm_cache_hit_rate": round(warm.remote_cache_hits / max(1, warm.total), 3),
        "cold_remote_actions": cold.remote,
        "warm_speedup_over_local": round(local_s / warm_s, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
