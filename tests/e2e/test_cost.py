"""`o11n cost report` on a real scheduler: an attempt priced by its worker's attribute."""

from __future__ import annotations

import json

import httpx
import pytest

from o11n.client import Client
from tests.e2e.conftest import StartServer, StartWorker
from tests.servers import run_cli, wait_for


def test_cost_report_prices_attempts_by_their_worker(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "w1", cpus=4)
    with Client(server.url, server.token) as api:
        wait_for(lambda: api.workers(), 30, "the worker registered")
        api.request(
            "POST",
            "/api/v1/agents/attributes",
            body={"agents": ["w1"], "key": "price", "scalar": 7.2},
        )
        job_id = api.submit({"command": "sleep 0.5", "resources": {"cpu": 2}, "tenant": "default"})
        job = wait_for(lambda: (j := api.get(job_id)).state.terminal and j, 30, "the job ended")
    attempt = job.attempts[-1]
    assert attempt.started_at is not None and attempt.ended_at is not None
    expected = (attempt.ended_at - attempt.started_at) / 3600 * 7.2 * 2 / 4
    out = run_cli(server.url, server.token, "cost", "report", "--by", "worker", "--json")
    found = json.loads(out.stdout)
    assert found["lines"][0]["key"] == "w1"
    assert found["lines"][0]["cost"] == pytest.approx(expected)
    assert found["total"] == pytest.approx(expected)
    table = run_cli(server.url, server.token, "cost", "report").stdout
    assert "default" in table and "total" in table
    metrics = httpx.get(server.url + "/metrics").text
    (line,) = [x for x in metrics.splitlines() if x.startswith('o11n_cost_total{tenant="default"}')]
    assert float(line.split()[-1]) == pytest.approx(expected)
