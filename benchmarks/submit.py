"""Durable submit throughput over HTTP: a real scheduler process on SQLite, on this machine.

Starts `python -m o11n server` on a free port with a fresh data folder (SQLite,
synchronous=FULL: a submit is answered after its commit is fsynced), then:

- single: one client, one job per request, sequentially: 3,000 timed requests
  after 200 warm-up ones, over one keep-alive `http.client` connection posting
  `{"command": ["true"], "idempotency_key": ...}` to /api/v1/jobs; per-request
  latency gives `single_p50_ms` and `single_p99_ms`;
- batch: 20 batches of 500 jobs to /api/v1/jobs/batch, spread over 4 client
  threads with a connection each (5 batches per thread), after one warm-up batch;
- sdk: 1,000 sequential `o11n.client.Client.submit` calls (after 50 warm-up);
- single again on a second server started with `--sqlite-sync normal` (commits
  reach the OS but are not fsynced: safe from kill -9, not from power loss),
  reported with the suffix `_sync_normal`.

Jobs per second are jobs over the wall time of each phase. The phases run in
this order against one database, which grows to 16,250 jobs; a submit's cost
grows with the number of stored jobs today, so later phases meet a bigger table.
At the end the server's job listing must hold exactly the ids it answered with
(`jobs_verified` counts them). Client and server share this machine's `cores`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from o11n.client import Client

SINGLE_WARMUP, SINGLE_JOBS = 200, 3_000
BATCH_SIZE, BATCHES, THREADS = 500, 20, 4
SDK_WARMUP, SDK_JOBS = 50, 1_000
JOB = {"command": ["true"]}
ROOT = Path(__file__).resolve().parents[1]  # the server runs this checkout's o11n


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(data_dir: Path, *extra: str) -> Iterator[tuple[int, str, int]]:
    """A scheduler subprocess on a free port; yields (port, admin token, pid); always stopped."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    command = [sys.executable, "-m", "o11n", "server", "--port", str(port), "--data"]
    command = [*command, str(data_dir), *extra]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sys.stderr)
    try:
        wait_healthy(port, server)
        yield port, (data_dir / "admin-token").read_text().strip(), server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once GET /healthz answers 200; raise if the server exits or is too slow."""
    deadline = time.monotonic() + timeout
    while not healthy(port):
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not become healthy in time")
        time.sleep(0.05)


def healthy(port: int) -> bool:
    """True if the server on `port` answers GET /healthz with 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Api:
    """One keep-alive connection to the scheduler that sends and receives JSON."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded answer, or RuntimeError on an error status."""
        payload = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {data[:300]!r}")
        return json.loads(data)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def job() -> dict[str, Any]:
    """A submit body with a unique idempotency key."""
    return {**JOB, "idempotency_key": uuid.uuid4().hex}


def created_ids(answers: list[dict[str, Any]]) -> list[int]:
    """The ids of submit answers, checking that each made a new job."""
    assert all(answer["created"] for answer in answers), "every key is new: every job too"
    return [int(answer["id"]) for answer in answers]


def submit_singles(api: Api, count: int) -> tuple[list[int], list[int]]:
    """Submit `count` jobs one per request; returns their ids and latencies (ns)."""
    answers, latencies = [], []
    for _ in range(count):
        body = job()
        start = time.perf_counter_ns()
        answers.append(api.call("POST", "/api/v1/jobs", body))
        latencies.append(time.perf_counter_ns() - start)
    return created_ids(answers), latencies


def batch_bodies(count: int) -> list[dict[str, Any]]:
    """`count` batch submit bodies of BATCH_SIZE jobs each."""
    return [{"jobs": [job() for _ in range(BATCH_SIZE)]} for _ in range(count)]


def submit_batches(api: Api, bodies: list[dict[str, Any]]) -> list[int]:
    """Submit these batches one after the other; returns the jobs' ids."""
    ids = []
    for body in bodies:
        ids += created_ids(api.call("POST", "/api/v1/jobs/batch", body)["jobs"])
    return ids


def percentile_ms(latencies_ns: list[int], pct: float) -> float:
    """The nearest-rank percentile, in milliseconds."""
    ordered = sorted(latencies_ns)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank] / 1e6


def single_phase(port: int, token: str, ids: list[int]) -> dict[str, float]:
    """One client, one job per request: jobs/s and latency percentiles."""
    api = Api(port, token)
    try:
        ids += submit_singles(api, SINGLE_WARMUP)[0]
        start = time.perf_counter()
        done, latencies = submit_singles(api, SINGLE_JOBS)
        elapsed = time.perf_counter() - start
    finally:
        api.close()
    ids += done
    return {
        "single_jobs_per_s": round(SINGLE_JOBS / elapsed),
        "single_p50_ms": round(percentile_ms(latencies, 50), 3),
        "single_p99_ms": round(percentile_ms(latencies, 99), 3),
    }


def batch_phase(port: int, token: str, ids: list[int]) -> dict[str, float]:
    """THREADS clients with a connection each share BATCHES batches: jobs/s."""
    apis = [Api(port, token) for _ in range(THREADS)]
    per_thread = [batch_bodies(BATCHES // THREADS) for _ in apis]
    try:
        for api in apis:  # warm-up, and opens each connection
            ids += submit_batches(api, batch_bodies(1))
        start = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            for done in pool.map(submit_batches, apis, per_thread):
                ids += done
        elapsed = time.perf_counter() - start
    finally:
        for api in apis:
            api.close()
    return {"batch_jobs_per_s": round(BATCHES * BATCH_SIZE / elapsed)}


def sdk_phase(port: int, token: str, ids: list[int]) -> dict[str, float]:
    """One SDK client, `Client.submit` one job at a time: jobs/s."""
    with Client(f"http://127.0.0.1:{port}", token) as client:
        ids += [client.submit(JOB) for _ in range(SDK_WARMUP)]
        start = time.perf_counter()
        done = [client.submit(JOB) for _ in range(SDK_JOBS)]
        elapsed = time.perf_counter() - start
    ids += done
    return {"sdk_single_jobs_per_s": round(SDK_JOBS / elapsed)}


def stored_ids(port: int, token: str) -> list[int]:
    """Every job id in the server's listing, page by page."""
    api, ids, cursor = Api(port, token), [], ""
    try:
        while cursor is not None:
            page = api.call("GET", f"/api/v1/jobs?limit=500{cursor and '&cursor=' + cursor}")
            ids += [int(j["id"]) for j in page["jobs"]]
            cursor = page["next_cursor"]
    finally:
        api.close()
    return ids


def main() -> None:
    """Run the three phases against a fresh server, check it stored every job, print figures."""
    figures: dict[str, float] = {}
    ids: list[int] = []
    with (
        tempfile.TemporaryDirectory(prefix="o11n-bench-") as tmp,
        running_server(Path(tmp)) as (port, token, _),
    ):
        for phase in (single_phase, batch_phase, sdk_phase):
            figures |= phase(port, token, ids)
            print(f"{phase.__name__}: {figures}", file=sys.stderr)
        stored = stored_ids(port, token)
    with (
        tempfile.TemporaryDirectory(prefix="o11n-bench-") as tmp,
        running_server(Path(tmp), "--sqlite-sync", "normal") as (port, token, _),
    ):
        normal = single_phase(port, token, [])
    figures |= {f"{key}_sync_normal": value for key, value in normal.items()}
    assert len(set(ids)) == len(ids), "the server gave two submits the same id"
    assert sorted(stored) == sorted(ids), f"{len(ids)} jobs submitted, {len(stored)} stored"
    print(json.dumps({**figures, "jobs_verified": len(stored), "cores": os.cpu_count() or 1}))


if __name__ == "__main__":
    main()
