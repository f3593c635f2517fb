"""Jobs through the whole system: a real scheduler and 2 local workers on this machine.

Starts `o11n server` (SQLite, fsync per commit) and two `o11n worker`s with
their defaults (each offers all of this machine's cores; a job asks for one),
all as separate processes talking HTTP over loopback.

- latency: with the workers idle, one `true` job at a time: submit, then wait
  until it has succeeded; `submit_to_start` is the attempt's `started_at` (when
  the worker had spawned the process) minus the moment just before the submit
  request was sent; 200 samples after 20 warm-up jobs.
- throughput: 2,000 `true` jobs submitted in batches of 500; `jobs_per_s` is
  2,000 over the time from the first submit to the last job succeeded (polled
  on /metrics). Every job must end succeeded after exactly one attempt.
- `scheduler_rss_mb`: the scheduler's resident memory after the throughput run
  (`scheduler_peak_rss_mb`: its high-water mark).
- sandbox: both phases run with the workers' default process sandbox and again
  with `--sandbox off`, alternately, twice each (the best of each kept);
  `sandbox_ratio` is the sandboxed throughput over the unsandboxed one. The
  figures without a suffix are the sandboxed (default) ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.submit import Api, percentile_ms, running_server
from o11n.client import Client

WARMUP, SAMPLES = 20, 200
JOBS, BATCH = 2_000, 500
JOB = {"command": ["true"]}
ROOT = Path(__file__).resolve().parents[1]


def start_workers(port: int, token: str, data: Path, sandbox: str) -> list[subprocess.Popen[bytes]]:
    """Two `o11n worker` processes with their default capacity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    token_file = data / "worker-token"
    token_file.write_text(token)
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "o11n",
                "worker",
                "--server",
                f"http://127.0.0.1:{port}",
                "--name",
                f"bench-{n}",
                "--workdir",
                str(data / f"work-{n}"),
                "--token-file",
                str(token_file),
                "--sandbox",
                sandbox,
            ],
            cwd=ROOT,
            env=env,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
        for n in (1, 2)
    ]


def wait_workers(client: Client, count: int) -> None:
    """Return once `count` workers are registered."""
    deadline = time.monotonic() + 30
    while len(client.workers()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not register")
        time.sleep(0.05)


def latency_phase(client: Client) -> dict[str, float]:
    """Submit-to-start with idle workers, one job at a time."""
    samples = []
    for n in range(WARMUP + SAMPLES):
        sent = time.time()
        job_id = client.submit(JOB)
        job = wait_done(client, job_id)
        if n >= WARMUP:
            samples.append(int((job.attempts[0].started_at - sent) * 1e9))
    return {
        "submit_to_start_p50_ms": round(percentile_ms(samples, 50), 2),
        "submit_to_start_p99_ms": round(percentile_ms(samples, 99), 2),
    }


def wait_done(client: Client, job_id: int) -> Any:
    """Poll until the job has ended; it must have succeeded."""
    while True:
        job = client.get(job_id)
        if job.state in ("succeeded", "failed", "error", "cancelled"):
            assert job.state == "succeeded", f"job {job_id} ended {job.state}: {job.reason}"
            return job
        time.sleep(0.002)


def succeeded(api: Api) -> int:
    """Jobs succeeded so far, from /metrics."""
    api.conn.request("GET", "/metrics")
    text = api.conn.getresponse().read().decode()
    match = re.search(r'^o11n_jobs\{state="succeeded"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def throughput_phase(port: int, token: str, before: int) -> dict[str, float]:
    """2,000 jobs in batches; time until all have succeeded."""
    api = Api(port, token)
    try:
        start = time.perf_counter()
        for _ in range(JOBS // BATCH):
            api.call("POST", "/api/v1/jobs/batch", {"jobs": [JOB] * BATCH})
        submitted = time.perf_counter() - start
        while succeeded(api) < before + JOBS:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        api.conn.close()
    print(f"submitted in {submitted:.2f}s, all done in {elapsed:.2f}s", file=sys.stderr)
    return {"jobs_per_s": round(JOBS / elapsed)}


def check_all_once(client: Client, expected: int) -> None:
    """Every job succeeded, each after one attempt."""
    seen, cursor = 0, None
    while True:
        page, cursor = client.jobs(limit=500, cursor=cursor)
        for job in page:
            assert job.state == "succeeded" and job.attempt == 1, (job.id, job.state, job.attempt)
        seen += len(page)
        if cursor is None:
            break
    assert seen == expected, f"{seen} jobs stored, {expected} submitted"


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return round(int(kb["VmRSS"]) / 1024, 1), round(int(kb["VmHWM"]) / 1024, 1)


def measure(sandbox: str) -> dict[str, float]:
    """Both phases against a fresh scheduler and two workers."""
    figures: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="o11n-e2e-") as tmp,
        running_server(Path(tmp)) as (port, token, server_pid),
    ):
        workers = start_workers(port, token, Path(tmp), sandbox)
        try:
            with Client(f"http://127.0.0.1:{port}", token) as client:
                wait_workers(client, 2)
                figures |= latency_phase(client)
                figures |= throughput_phase(port, token, WARMUP + SAMPLES)
                check_all_once(client, WARMUP + SAMPLES + JOBS)
            figures["scheduler_rss_mb"], figures["scheduler_peak_rss_mb"] = rss_mb(server_pid)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
    return figures


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the highest throughput."""
    return max(runs, key=lambda figures: figures["jobs_per_s"])


def main() -> None:
    """Sandboxed and unsandboxed, alternately; print the figures."""
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for sandbox in ("off", "on", "off", "on"):
        runs[sandbox].append(measure(sandbox))
    sandboxed, plain = best(runs["on"]), best(runs["off"])
    figures = {
        **sandboxed,
        "jobs_per_s_unsandboxed": plain["jobs_per_s"],
        "submit_to_start_p50_ms_unsandboxed": plain["submit_to_start_p50_ms"],
        "sandbox_ratio": round(sandboxed["jobs_per_s"] / plain["jobs_per_s"], 3),
    }
    print(json.dumps({**figures, "workers": 2, "cores": os.cpu_count() or 1}))


if __name__ == "__main__":
    main()
