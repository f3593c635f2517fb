"""A service whose tasks run in an image, through a real scheduler, worker and podman:
the task serves from inside its image on its agent's host port, and deleting the
service removes its container. Nothing is skipped: without podman this fails (run
`bash .ci/install-containers` as root)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from o11n.client import Client
from tests.containers_env import BUSYBOX, docker_client
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.test_services import apply, inspect, running
from tests.servers import ServerProcess, wait_for

ADDRESS = "127.0.0.2"  # the agent's --address: where its tasks' ports are published
SERVICE = f"""
name: web
instances: 1
image: {BUSYBOX}
command: exec httpd -f -p "$PORT_HTTP" -h /etc
resources: {{cpu: 0.25, memory: 64M}}
ports:
  - {{name: HTTP, hostPort: 0}}
"""


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker_client()
    client.images.pull(BUSYBOX)
    yield client
    client.close()


@pytest.fixture
def agent(
    start_server: StartServer, start_worker: StartWorker
) -> Iterator[tuple[ServerProcess, str]]:
    """A scheduler and one worker (a unique name, so its containers are told apart);
    the worker's teardown removes every container it made, whatever the test left."""
    name = f"svc-{uuid.uuid4().hex[:8]}"
    server = start_server()
    start_worker(server, name, cpus=2, kill_grace=2.0, extra=("--address", ADDRESS))
    with Client(server.url, server.token) as client:
        wait_for(client.workers, 30, "the worker registered")
    yield server, name


def containers_of(engine: docker.DockerClient, worker: str, **filters: Any) -> list[str]:
    """The ids of the worker's containers. Listed without inspecting each (the SDK's
    `containers.list` does): one removed in between is a 500 from podman, not a 404."""
    found = engine.api.containers(filters={"label": f"o11n.worker={worker}"}, **filters)
    return [c["Id"] for c in found]


def fetch(url: str) -> str | None:
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None
    return answer.text if answer.status_code == 200 else None


def test_a_service_task_serves_from_its_image_on_its_host_port_until_deleted(
    agent: tuple[ServerProcess, str], engine: docker.DockerClient
) -> None:
    server, worker = agent
    with Client(server.url, server.token) as client:
        assert apply(client, SERVICE)["result"] == "created"
        (task,) = running(client, 1)["tasks"]
        assert task["ip"] == ADDRESS
        url = f"http://{ADDRESS}:{task['ports']['HTTP']}/o11n-image"
        # /etc/o11n-image exists only in the test images: "1" is busybox:1's own file
        assert not Path("/etc/o11n-image").exists()
        served = wait_for(lambda: fetch(url), 60, lambda: f"{url}: {json.dumps(inspect(client))}")
        assert served is not None and served.strip() == "1"
        (container_id,) = containers_of(engine, worker)
        container = engine.containers.get(container_id)
        assert container.labels["o11n.job"] == str(task["job_id"])
        assert BUSYBOX in container.image.tags

        client.request("DELETE", "/api/v1/services/default/web")
        wait_for(
            lambda: not client.request("GET", "/api/v1/services")["services"],
            60,
            "the service never went away",
        )
    wait_for(lambda: not containers_of(engine, worker, all=True), 30, "its container was left")
    assert fetch(url) is None
