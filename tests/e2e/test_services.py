"""Services run by a real scheduler on real workers: placement, ports, restarts, scaling,
rolling updates, lost and disabled agents, a scheduler restart, and discovery."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from o11n.client import APIError, Client
from tests.e2e.conftest import StartServer, StartWorker
from tests.servers import ServerProcess, WorkerProcess, run_cli, wait_for

WEB = """
name: web
instances: {instances}
command: exec python3 -m http.server "$PORT_HTTP" --bind "$O11N_HOST_IP"
resources: {{cpu: 0.25, memory: 64M}}
ports:
  - {{name: HTTP, hostPort: 0}}
  - {{name: SPARE, hostPort: 0}}
labels: {{app: web}}
constraints:
  - [{{name: hostname, operate: MAXPER, value: {maxper}}}]
"""


@pytest.fixture
def farm(start_server: StartServer, start_worker: StartWorker) -> Iterator[ServerProcess]:
    """A scheduler and three workers, each on its own loopback address."""
    server = start_server()
    for i in (1, 2, 3):
        start_worker(server, f"w{i}", cpus=2, extra=("--address", f"127.0.0.{i + 1}"))
    with Client(server.url, server.token) as admin:
        wait_for(lambda: len(admin.workers()) == 3, 30, "three workers registered")
    yield server


def apply(client: Client, text: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.request("POST", "/api/v1/services", body={"service": text})
    return answer


def inspect(client: Client, name: str = "web") -> dict[str, Any]:
    found: dict[str, Any] = client.request("GET", f"/api/v1/services/default/{name}")
    return found


def running(client: Client, count: int, name: str = "web") -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        svc = inspect(client, name)
        ok = svc["running"] == count and len(svc["tasks"]) == count
        return svc if ok else None

    return wait_for(ready, 60, lambda: json.dumps(inspect(client, name)))


def served(task: dict[str, Any]) -> bool:
    try:
        url = f"http://{task['ip']}:{task['ports']['HTTP']}/"
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_tasks_are_placed_with_their_own_ports_and_serve(farm: ServerProcess) -> None:
    with Client(farm.url, farm.token) as client:
        assert apply(client, WEB.format(instances=3, maxper=1))["result"] == "created"
        svc = running(client, 3)
        agents = {t["agent"]: t["ip"] for t in svc["tasks"]}
        assert agents == {"w1": "127.0.0.2", "w2": "127.0.0.3", "w3": "127.0.0.4"}  # MAXPER 1
        for task in svc["tasks"]:
            assert 31000 <= task["ports"]["HTTP"] <= 32000
            assert task["ports"]["HTTP"] != task["ports"]["SPARE"]
            wait_for(lambda t=task: served(t), 30, f"task {task} never answered")
        listed = client.request("GET", "/api/v1/services/default/web/endpoints")["endpoints"]
        assert sorted((e["ip"], e["ports"]["HTTP"]) for e in listed) == sorted(
            (t["ip"], t["ports"]["HTTP"]) for t in svc["tasks"]
        )
        offers = {a["name"]: a["ports"] for a in client.request("GET", "/api/v1/offers")["agents"]}
        for task in svc["tasks"]:
            assert str(task["ports"]["HTTP"]) not in offers[task["agent"]].split(",")
    hosts = run_cli(
        farm.url, farm.token, "services", "endpoints", "web", "--format", "distcc-hosts"
    )
    assert sorted(hosts.stdout.split()) == sorted(
        f"{t['ip']}:{t['ports']['HTTP']}/1" for t in svc["tasks"]
    )
    applied = run_cli(farm.url, farm.token, "services", "inspect", "web")
    assert "127.0.0.3" in applied.stdout and "running" in applied.stdout


def test_a_task_that_exits_is_restarted_with_its_exit_recorded(farm: ServerProcess) -> None:
    with Client(farm.url, farm.token) as client:
        apply(client, WEB.format(instances=1, maxper=1))
        (task,) = running(client, 1)["tasks"]
        job = client.get(task["job_id"])
        assert job.service is not None and job.service.ports == task["ports"]
        assert "PORT_HTTP" not in job.env  # the worker gives it from the `service` field
        os.kill(_pid_listening(task["ports"]["HTTP"]), signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            (t,) = inspect(client)["tasks"]
            return t if t["restarts"] == 1 and t["state"] == "running" else None

        again = wait_for(restarted, 60, lambda: json.dumps(inspect(client)))
        assert again["job_id"] != task["job_id"] and "137" in again["last_exit"]


def _pid_listening(port: int) -> int:
    """The pid of the process that listens on a port (from /proc)."""
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inode = fields[9]
    assert inode, f"nothing listens on {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            for fd in fds:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process holds the socket on {port}")


def test_scale_roll_and_delete(farm: ServerProcess) -> None:
    with Client(farm.url, farm.token) as client:
        apply(client, WEB.format(instances=2, maxper=2))
        first = running(client, 2)
        client.request("POST", "/api/v1/services/default/web/scale", body={"instances": 4})
        running(client, 4)
        client.request("POST", "/api/v1/services/default/web/scale", body={"instances": 1})
        running(client, 1)
        changed = WEB.format(instances=2, maxper=2).replace("--bind", "--directory / --bind")
        assert apply(client, changed)["result"] == "updated"

        def rolled() -> dict[str, Any] | None:
            svc = inspect(client)
            versions = {t["version"] for t in svc["tasks"]}
            ok = svc["running"] == 2 and versions == {svc["version"]}
            return svc if ok else None

        svc = wait_for(rolled, 60, lambda: json.dumps(inspect(client)))
        assert svc["version"] != first["version"]
        assert apply(client, changed)["result"] == "unchanged"
        client.request("DELETE", "/api/v1/services/default/web")

        def gone() -> bool:
            return not client.request("GET", "/api/v1/services")["services"]

        wait_for(gone, 60, "the service never went away")
        for agent in client.request("GET", "/api/v1/offers")["agents"]:
            assert agent["ports"] == "31000-32000"  # every port freed


def test_an_impossible_constraint_stays_pending_with_its_reason(farm: ServerProcess) -> None:
    text = WEB.format(instances=1, maxper=1).replace(
        "constraints:", "constraints:\n  - [{name: city, operate: LIKE, value: beijing}]"
    )
    with Client(farm.url, farm.token) as client:
        apply(client, text)

        def waiting() -> str | None:
            reason: str | None = inspect(client).get("reason")
            return reason if reason and "city" in reason else None

        reason = wait_for(waiting, 30, lambda: json.dumps(inspect(client)))
        assert "no agent can take a task of default/web" in reason
        shown = run_cli(farm.url, farm.token, "services", "inspect", "web")
        assert "waiting: no agent can take" in shown.stdout


def test_tasks_of_a_lost_agent_are_placed_elsewhere_and_disabled_agents_get_none(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server(lease_seconds=3.0)
    workers: dict[str, WorkerProcess] = {
        name: start_worker(server, name, cpus=2, extra=("--address", ip))
        for name, ip in (("w1", "127.0.0.2"), ("w2", "127.0.0.3"))
    }
    with Client(server.url, server.token) as client:
        wait_for(lambda: len(client.workers()) == 2, 30, "two workers registered")
        client.request("POST", "/api/v1/agents/w2/disable")
        apply(client, WEB.format(instances=2, maxper=2))
        svc = running(client, 2)
        assert {t["agent"] for t in svc["tasks"]} == {"w1"}  # w2 is disabled
        client.request("POST", "/api/v1/agents/w2/enable")
        workers["w1"].kill()

        def moved() -> dict[str, Any] | None:
            s = inspect(client)
            ok = s["running"] == 2 and {t["agent"] for t in s["tasks"]} == {"w2"}
            return s if ok else None

        svc = wait_for(moved, 90, lambda: json.dumps(inspect(client)))
        assert all(t["ip"] == "127.0.0.3" for t in svc["tasks"])


def test_tasks_survive_a_scheduler_restart(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "w1", cpus=2, extra=("--address", "127.0.0.2"))
    with Client(server.url, server.token) as client:
        wait_for(lambda: client.workers(), 30, "the worker registered")
        apply(client, WEB.format(instances=2, maxper=2))
        before = running(client, 2)["tasks"]
    server.stop()
    server.start()
    with Client(server.url, server.token) as client:
        after = running(client, 2)["tasks"]
        assert [(t["job_id"], t["ports"]) for t in after] == [
            (t["job_id"], t["ports"]) for t in before
        ]
        apply(client, WEB.format(instances=3, maxper=3))
        third = running(client, 3)["tasks"][2]
        taken = {p for t in before for p in t["ports"].values()}
        assert not taken & set(third["ports"].values())  # ports held across the restart


def test_bad_service_files_are_refused_with_line_and_column(farm: ServerProcess) -> None:
    with Client(farm.url, farm.token) as client:
        for text, where in [
            ("name: web\ncommand: x\nports:\n  - {name: A, hostPort: 70000}\n", ":4:"),
            ("name: web\ncommand: x\nconstraints:\n  - [{name: a, operate: LIK}]\n", ":"),
            ("name: Bad_Name\ncommand: x\n", ":1:"),
            ("name: web\ncommand: x\nmetrics: {port: NOPE}\n", ":"),
        ]:
            with pytest.raises(APIError) as refused:
                client.request(
                    "POST", "/api/v1/services", body={"service": text, "file_name": "s.yml"}
                )
            assert refused.value.status == 400 and "s.yml" + where in refused.value.message
        assert client.request("GET", "/api/v1/services")["services"] == []
