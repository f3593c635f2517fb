"""The pool page with everything it can show, from a real scheduler: a service's tasks
with their endpoints and scraped metrics, the autoscaler's decisions as it starts a
worker for a job, and what that job cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from o11n.client import Client
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import wait_final
from tests.e2e.test_autoscale import CATALOG
from tests.e2e.test_services import apply, running
from tests.servers import ServerProcess
from tests.ui.conftest import screenshot, sign_in

ADDRESS = "127.0.0.3"  # the service agent's --address: its task's endpoint
METRICS = """
name: stats
command: >-
  mkdir -p site && printf 'demo_requests_total 7\\n' > site/metrics && cd site &&
  exec python3 -m http.server "$PORT_HTTP" --bind "$O11N_HOST_IP"
resources: {cpu: 0.25, memory: 64M}
ports:
  - {name: HTTP, hostPort: 0}
metrics: {port: HTTP, path: /metrics, frequency: 1s}
"""


def elastic_pool(start_server: StartServer, start_worker: StartWorker, tmp_path: Path) -> Any:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    server = start_server(lease_seconds=5.0, extra=("--autoscale", str(catalog)))
    start_worker(server, "svc-agent", cpus=1, extra=("--address", ADDRESS))
    return server


def test_the_pool_page_shows_services_autoscaling_and_cost(
    page: Any, start_server: StartServer, start_worker: StartWorker, tmp_path: Path
) -> None:
    server: ServerProcess = elastic_pool(start_server, start_worker, tmp_path)
    with Client(server.url, server.token) as client:
        assert apply(client, METRICS)["result"] == "created"
        (task,) = running(client, 1, "stats")["tasks"]
        # a job only an elastic worker can run: the autoscaler starts one for it
        job_id = client.submit({"command": ["true"], "tags": {"pool": "elastic"}})
        job = wait_final(client, job_id, timeout=90)
        assert job.state.value == "succeeded" and job.attempts[-1].worker == "elastic-1"

    sign_in(page, server)
    page.goto(f"{server.url}/#/pool")
    tasks = page.get_by_role("table", name="Tasks of stats")
    row = tasks.locator("tbody tr").first
    row.filter(has_text="running").wait_for()
    assert "svc-agent" in row.inner_text() and ADDRESS in row.inner_text()
    assert f"HTTP:{task['ports']['HTTP']}" in row.inner_text()
    row.filter(has_text="demo_requests_total 7").wait_for()  # scraped: the latest sample
    assert row.locator(".badge.state-up").inner_text() == "up"

    events = page.get_by_role("table", name="Autoscaler events")
    started = events.locator("tr", has_text="elastic-1").filter(has_text="local.small")
    started.first.wait_for()
    costs = page.get_by_role("table", name="Cost by tenant")
    line = costs.locator("tbody tr", has_text="default")
    line.wait_for()
    assert line.locator("td").nth(1).inner_text() == "1"  # the elastic job's one attempt
    cost = line.locator("td").nth(3).locator("span")  # a fraction of a cent
    assert cost.inner_text() == "< 0.01" and float(cost.get_attribute("title")) > 0
    page.get_by_text("autoscaling is off").wait_for(state="detached")
    screenshot(page, "pool-services")
