"""Reserved names and scheduler-only fields, tried at every door a tenant submits through:
jobs (one and a batch), pipelines and services. Each is refused with a 4xx naming the key,
and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scheduler.inproc import ADMIN_TOKEN, AppClient, app_client, call, ok, tenant

FORGED_SERVICE_ENV = {"O11N_SERVICE": "build/distcc", "PORT_X": "8080", "O11N_HOST_IP": "0.0.0.0"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[AppClient]:
    with app_client(tmp_path / "data") as app:
        yield app


@pytest.fixture
def alice(client: AppClient) -> str:
    return tenant(client, "alice")


def refused(answer: Any, *words: str) -> str:
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert error["code"] and all(w in error["message"] for w in words), error
    message: str = error["message"]
    return message


def no_jobs(client: AppClient) -> None:
    assert ok(client, ADMIN_TOKEN, "GET", "/api/v1/jobs")["jobs"] == []


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"labels": {"o11n.pipeline": "1", "o11n.substage": "build", "o11n.copy": "0"}}, "o11n."),
        ({"labels": {"o11n.service": "build/distcc", "o11n.task": "0"}}, "o11n.service"),
        ({"labels": {"O11N.reapi.action": "x/1"}}, "O11N.reapi.action"),
        ({"env": {"O11N_TOKEN": "stolen"}}, "O11N_TOKEN"),
        ({"env": {"PORT_HTTP": "80"}}, "PORT_HTTP"),
        ({"env": {"O11N_FENCE": "999"}}, "O11N_FENCE"),
    ],
)
@pytest.mark.parametrize("who", ["tenant", "admin"])
def test_a_job_with_reserved_labels_or_env_is_refused(
    client: AppClient, alice: str, who: str, fields: dict[str, Any], key: str
) -> None:
    token = alice if who == "tenant" else ADMIN_TOKEN
    body = {"command": ["sh", "-c", "env"], **fields}
    refused(call(client, token, "POST", "/api/v1/jobs", body), key, "reserved")
    no_jobs(client)


def test_a_batch_with_one_reserved_name_is_refused_whole(client: AppClient, alice: str) -> None:
    jobs = [{"command": ["true"]}, {"command": ["true"], "env": {"PORT_DB": "5432"}}]
    message = refused(call(client, alice, "POST", "/api/v1/jobs/batch", {"jobs": jobs}), "PORT_DB")
    assert "jobs[1]" in message
    no_jobs(client)


def test_a_job_forging_a_service_tasks_env_is_refused(client: AppClient, alice: str) -> None:
    """The network bypass: O11N_SERVICE + PORT_X + O11N_HOST_IP=0.0.0.0 used to buy a job a
    network and a host port outside the agent's pool."""
    body = {"command": ["nc", "-l", "8080"], "network": False, "env": FORGED_SERVICE_ENV}
    refused(call(client, alice, "POST", "/api/v1/jobs", body), "reserved")
    no_jobs(client)


@pytest.mark.parametrize("who", ["tenant", "admin"])
def test_the_scheduler_only_service_field_is_refused_from_everyone(
    client: AppClient, alice: str, who: str
) -> None:
    token = alice if who == "tenant" else ADMIN_TOKEN
    task = {"service": "build/distcc", "index": 0, "host_ip": "0.0.0.0", "ports": {"X": 8080}}
    body = {"command": ["nc", "-l", "8080"], "service": task}
    answer = call(client, token, "POST", "/api/v1/jobs", body)
    assert answer.status_code == 400, answer.text
    refused(answer, "'service'", "set by the scheduler only")
    batch = call(client, token, "POST", "/api/v1/jobs/batch", {"jobs": [body]})
    assert batch.status_code == 400, batch.text
    no_jobs(client)


@pytest.mark.parametrize("cpu", [0, 0.0, 0.001])
def test_a_cpu_request_below_the_floor_is_refused(
    client: AppClient, alice: str, cpu: float
) -> None:
    """cpu 0 meant no CPU quota, and such jobs were packed without limit."""
    body = {"command": ["true"], "resources": {"cpu": cpu}}
    refused(call(client, alice, "POST", "/api/v1/jobs", body), "resources.cpu", "0.01")
    no_jobs(client)


def test_the_smallest_cpu_request_is_taken(client: AppClient, alice: str) -> None:
    body = {"command": ["true"], "resources": {"cpu": 0.01}}
    assert call(client, alice, "POST", "/api/v1/jobs", body).status_code == 201


PIPELINE = """
name: p
variables: {VARS}
stages:
  - name: build
    substages:
      - name: compile
        run: make
        env: {ENV}
        matrix: {MATRIX}
        resources: {RESOURCES}
"""


def pipeline(**parts: str) -> str:
    filled = {"VARS": "{}", "ENV": "{}", "MATRIX": "{}", "RESOURCES": "{}", **parts}
    text = PIPELINE
    for name, value in filled.items():
        text = text.replace("{" + name + "}", value)
    return text


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"pipeline": pipeline(ENV="{O11N_SERVICE: build/distcc}")}, "O11N_SERVICE"),
        ({"pipeline": pipeline(ENV="{PORT_X: '8080'}")}, "PORT_X"),
        ({"pipeline": pipeline(VARS="{O11N_HOST_IP: 0.0.0.0}")}, "O11N_HOST_IP"),
        ({"pipeline": pipeline(), "vars": {"O11N_TOKEN": "x"}}, "O11N_TOKEN"),
        ({"pipeline": pipeline(MATRIX="{PORT_N: [1, 2]}")}, "PORT_N"),
        ({"pipeline": pipeline(RESOURCES="{cpu: 0}")}, "cpu"),
    ],
)
def test_a_pipeline_with_reserved_env_or_no_cpu_is_refused(
    client: AppClient, alice: str, body: dict[str, Any], key: str
) -> None:
    refused(call(client, alice, "POST", "/api/v1/pipelines", body), key)
    assert ok(client, ADMIN_TOKEN, "GET", "/api/v1/pipelines")["pipelines"] == []
    no_jobs(client)


SERVICE = """
name: web
namespace: alice
command: exec python3 -m http.server "$PORT_HTTP"
ports: [{name: HTTP, hostPort: 0}]
"""


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("env: {O11N_HOST_IP: 0.0.0.0}", "O11N_HOST_IP"),
        ("env: {PORT_HTTP: '80'}", "PORT_HTTP"),
        ("env: {O11N_SERVICE: other/svc}", "O11N_SERVICE"),
        ("labels: {o11n.service: other/svc}", "o11n.service"),
        ("resources: {cpu: 0}", "cpu"),
    ],
)
def test_a_service_with_reserved_env_labels_or_no_cpu_is_refused(
    client: AppClient, alice: str, extra: str, key: str
) -> None:
    body = {"service": SERVICE + extra + "\n"}
    refused(call(client, alice, "POST", "/api/v1/services", body), key)
    assert ok(client, ADMIN_TOKEN, "GET", "/api/v1/services")["services"] == []


def test_a_service_task_gets_its_ports_in_the_scheduler_set_field(
    client: AppClient, alice: str
) -> None:
    """What the scheduler itself submits still works: the task's job has the `service`
    field (ports, agent address), its labels, and no PORT_* or O11N_* in its env."""
    ok(client, alice, "POST", "/api/v1/services", {"service": SERVICE + "env: {MODE: fast}\n"})
    register = {"name": "w1", "cpu": 2, "memory": "1G", "address": "127.0.0.7"}
    ok(client, ADMIN_TOKEN, "POST", "/api/v1/workers/register", register)
    grants: list[Any] = []
    for _ in range(50):  # the reconcile loop places the task within a second or two
        grants = ok(client, ADMIN_TOKEN, "POST", "/api/v1/workers/w1/lease", {"wait": 0.2})["jobs"]
        if grants:
            break
    (grant,) = grants
    spec = grant["spec"]
    assert spec["labels"]["o11n.service"] == "alice/web" and spec["env"] == {"MODE": "fast"}
    task = spec["service"]
    assert (task["service"], task["index"], task["host_ip"]) == ("alice/web", 0, "127.0.0.7")
    assert 31000 <= task["ports"]["HTTP"] <= 32000
