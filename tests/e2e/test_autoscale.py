"""The autoscaler with the local provider on a real scheduler: a job with tags no worker
has makes a worker appear, it runs there, the worker goes away when idle; a reclaimed
instance's job completes on a replacement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from o11n.client import Client
from tests.e2e.conftest import StartServer
from tests.servers import ServerProcess, free_port, run_cli, running, wait_for

ROOT = Path(__file__).resolve().parents[2]

CATALOG = """
currency: CNY
autoscale:
  scale_up_after: 0.5s
  idle_ttl: 3s
  min_workers: 0
  max_workers: 2
  spot_strategy: follow_market
  spot_duration: 0s
types:
  - {name: local.big, cpu: 2, memory: 2G, price: 0.4, spot_price: 0.2, tags: {pool: elastic}}
  - {name: local.small, cpu: 1, memory: 1G, price: 0.2, spot_price: 0.05, tags: {pool: elastic}}
"""


def elastic_server(start_server: StartServer, tmp_path: Path) -> ServerProcess:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    return start_server(lease_seconds=5.0, extra=("--autoscale", str(catalog)))


def status(api: Client) -> dict[str, Any]:
    found: dict[str, Any] = api.request("GET", "/api/v1/autoscale")
    return found


def kinds(api: Client) -> list[str]:
    return [e["kind"] for e in api.request("GET", "/api/v1/autoscale/events")["events"]]


def test_a_worker_appears_for_a_job_and_goes_when_idle(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = elastic_server(start_server, tmp_path)
    with Client(server.url, server.token) as api:
        assert api.workers() == []  # scale to zero: nothing runs before there is work
        job_id = api.submit({"command": ["true"], "tags": {"pool": "elastic"}})
        job = wait_for(lambda: (j := api.get(job_id)).state.terminal and j, 60, "the job ran")
        assert job.state.value == "succeeded"
        (instance,) = status(api)["instances"]
        assert instance["type"] == "local.small"  # the cheapest type that fits
        assert job.attempts[-1].worker == instance["worker"] == "elastic-1"
        gone = wait_for(lambda: status(api)["instances"][0]["stopped_at"], 30, "idle stop")
        assert gone and "stop" in kinds(api)
        wait_for(lambda: _worker_pid("elastic-1", server.url) is None, 30, "the worker exited")
        agent = next(a for a in api.request("GET", "/api/v1/agents")["agents"])
        assert agent["attributes"]["price"] == 0.05  # what cost reports charge
    events = run_cli(server.url, server.token, "autoscale", "events").stdout
    assert "started" in events and "local.small" in events and "idle" in events
    shown = run_cli(server.url, server.token, "autoscale", "status").stdout
    assert "elastic-1" in shown and "spot interruptions: 0" in shown


def test_a_reclaimed_instances_job_completes_on_a_replacement(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = elastic_server(start_server, tmp_path)
    with Client(server.url, server.token) as api:
        job_id = api.submit({"command": "sleep 3", "tags": {"pool": "elastic"}})
        running = wait_for(
            lambda: (j := api.get(job_id)).state == "running" and j,
            60,
            "the job started on a created worker",
        )
        first = running.attempts[0].worker
        pid = _worker_pid(first, server.url)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the cloud takes the spot instance back
        job = wait_for(lambda: (j := api.get(job_id)).state.terminal and j, 90, "it finished")
        assert job.state.value == "succeeded"
        assert [(a.worker, a.outcome) for a in job.attempts] == [
            (first, "lost"),
            ("elastic-2", "succeeded"),
        ]
        assert status(api)["interruptions"] == 1 and "reclaimed" in kinds(api)


def test_local_workers_drain_when_their_scheduler_dies(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A scheduler killed outright leaves no worker behind: a restarted one would
    otherwise meet a stranger under the name it gives its first new worker."""
    server = elastic_server(start_server, tmp_path)
    with Client(server.url, server.token) as api:
        job_id = api.submit({"command": ["true"], "tags": {"pool": "elastic"}})
        wait_for(lambda: api.get(job_id).state.terminal, 60, "the job ran")
    assert _worker_pid("elastic-1", server.url) is not None
    server.kill()
    wait_for(
        lambda: _worker_pid("elastic-1", server.url) is None,
        30,
        "the worker outlived its scheduler",
    )


def _worker_pid(name: str, server: str) -> int | None:
    """The pid of the `o11n worker --server SERVER --name NAME` process, if it runs (the
    server tells this test's workers from any other test's, or run's, of that name)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                b"worker" in argv
                and name.encode() in argv
                and server.encode() in argv
                and running(int(entry.name))
            ):
                return int(entry.name)
    return None


def test_o11n_up_with_the_example_catalog_scales_from_zero_and_back(tmp_path: Path) -> None:
    """The issue's "done when": `o11n up --autoscale examples/autoscale/local.yaml`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    data = tmp_path / "data"
    up = subprocess.Popen(
        [
            *(sys.executable, "-m", "o11n", "up", "--port", str(port), "--data", str(data)),
            *("--autoscale", str(ROOT / "examples" / "autoscale" / "local.yaml")),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: (data / "admin-token").exists() and _healthy(url), 30, "up started")
        env |= {"O11N_SERVER": url, "O11N_TOKEN": (data / "admin-token").read_text().strip()}
        with Client(url, env["O11N_TOKEN"]) as api:
            assert api.workers() == []
        ran = subprocess.run(
            [
                *(sys.executable, "-m", "o11n", "submit", "--tag", "pool=elastic", "--wait"),
                *("--", "sh", "-c", "echo ran on $O11N_WORKER"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == "ran on elastic-1"
        with Client(url, env["O11N_TOKEN"]) as api:
            wait_for(lambda: status(api)["instances"][0]["stopped_at"], 60, "the idle stop")
        wait_for(lambda: _worker_pid("elastic-1", url) is None, 60, "the worker process exited")
    finally:
        up.terminate()
        up.wait(30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
