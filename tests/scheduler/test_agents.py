"""Agents of a real scheduler: attributes, disable/enable, offers, and jobs matching them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from o11n.client import APIError, Client
from tests.servers import ServerProcess, run_cli


def register(worker: Client, name: str, **extra: Any) -> None:
    body = {"name": name, "tags": {"arch": "x86_64"}, "cpu": 2, "memory": "4G", **extra}
    worker.request("POST", "/api/v1/workers/register", body=body)


def lease(worker: Client, name: str) -> list[int]:
    answer = worker.request("POST", f"/api/v1/workers/{name}/lease", body={"max_jobs": 8})
    return [grant["id"] for grant in answer["jobs"]]


def agents(admin: Client) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in admin.request("GET", "/api/v1/agents")["agents"]}


def set_attr(admin: Client, names: list[str], key: str, **value: Any) -> None:
    body = {"agents": names, "key": key, **value}
    admin.request("POST", "/api/v1/agents/attributes", body=body, retry=False)


@pytest.fixture
def worker(server: ServerProcess, admin: Client) -> Iterator[Client]:
    with Client(server.url, admin.worker_token()) as client:
        yield client


def test_attributes_are_set_shown_and_survive_registering_again_and_a_restart(
    server: ServerProcess, admin: Client, worker: Client
) -> None:
    register(worker, "w1", address="127.0.0.2", ports="40000-40009", disk=10 * 2**30)
    register(worker, "w2", address="127.0.0.3")
    set_attr(admin, ["w1"], "city", string="shenzhen")
    set_attr(admin, ["w1", "w2"], "cores", scalar=24)
    set_attr(admin, ["w2"], "gone", string="soon")
    set_attr(admin, ["w2"], "gone", delete=True)
    found = agents(admin)
    assert found["w1"]["attributes"] == {"city": "shenzhen", "cores": 24.0}
    assert found["w2"]["attributes"] == {"cores": 24.0}
    assert (found["w1"]["ip"], found["w1"]["ports"]) == ("127.0.0.2", "40000-40009")
    assert found["w1"]["tags"] == {"arch": "x86_64"} and not found["w1"]["disabled"]

    register(worker, "w1", address="127.0.0.2")  # the worker restarted
    assert agents(admin)["w1"]["attributes"] == {"city": "shenzhen", "cores": 24.0}
    server.stop()
    server.start()
    register(worker, "w1", address="127.0.0.2")  # and the scheduler did
    assert agents(admin)["w1"]["attributes"] == {"city": "shenzhen", "cores": 24.0}


def test_jobs_match_attributes_and_the_implicit_hostname_and_ip(
    admin: Client, worker: Client
) -> None:
    register(worker, "w1", address="127.0.0.2")
    register(worker, "w2", address="127.0.0.3")
    set_attr(admin, ["w2"], "city", string="shanghai")
    by_city = admin.submit({"command": ["true"], "tags": {"city": "shanghai"}})
    by_name = admin.submit({"command": ["true"], "tags": {"hostname": "w1"}})
    by_ip = admin.submit({"command": ["true"], "tags": {"ip": "127.0.0.3"}})
    assert lease(worker, "w1") == [by_name]
    assert sorted(lease(worker, "w2")) == [by_city, by_ip]


def test_a_disabled_agent_gets_no_new_jobs_until_enabled(admin: Client, worker: Client) -> None:
    register(worker, "w1")
    admin.request("POST", "/api/v1/agents/w1/disable", retry=False)
    job_id = admin.submit({"command": ["true"]})
    assert lease(worker, "w1") == []
    assert agents(admin)["w1"]["disabled"]
    assert admin.request("GET", "/api/v1/offers")["agents"] == []
    admin.request("POST", "/api/v1/agents/w1/enable", retry=False)
    assert lease(worker, "w1") == [job_id]


def test_offers_show_free_room_and_ports(admin: Client, worker: Client) -> None:
    register(worker, "w1", address="127.0.0.2", ports="31000-31009", disk=5 * 2**30)
    admin.submit({"command": ["true"], "resources": {"cpu": 1.5, "memory": "1G"}})
    lease(worker, "w1")
    (offer,) = admin.request("GET", "/api/v1/offers")["agents"]
    assert offer["free"] == {"cpu": 0.5, "memory": 3 * 2**30, "gpu": 0}
    assert (offer["disk"], offer["ports"], offer["ip"]) == (5 * 2**30, "31000-31009", "127.0.0.2")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"agents": ["w1"], "key": "city"}, 422),  # no value
        ({"agents": ["w1"], "key": "city", "string": "a", "scalar": 1}, 422),  # two
        ({"agents": ["w1"], "key": "hostname", "string": "x"}, 422),  # implicit
        ({"agents": ["w1"], "key": "city", "string": "has space"}, 422),
        ({"agents": ["w1"], "key": "n", "scalar": "NaN"}, 422),
        ({"agents": ["nobody"], "key": "city", "string": "x"}, 404),
        ({"agents": [], "key": "city", "string": "x"}, 422),
    ],
)
def test_bad_attribute_requests_are_refused_and_change_nothing(
    admin: Client, worker: Client, body: dict[str, Any], status: int
) -> None:
    register(worker, "w1")
    with pytest.raises(APIError) as refused:
        admin.request("POST", "/api/v1/agents/attributes", body=body, retry=False)
    assert refused.value.status == status
    assert agents(admin)["w1"]["attributes"] == {}


def test_registering_with_a_bad_address_or_port_range_is_refused(worker: Client) -> None:
    for extra in ({"address": "not-an-ip"}, {"ports": "32000-31000"}, {"ports": "0-70000"}):
        with pytest.raises(APIError) as refused:
            register(worker, "w1", **extra)
        assert refused.value.status == 422


def test_only_an_admin_sets_attributes(
    server: ServerProcess, admin: Client, worker: Client
) -> None:
    register(worker, "w1")
    tenant = admin.create_tenant("team-a")["token"]
    with Client(server.url, tenant) as other, pytest.raises(APIError) as refused:
        set_attr(other, ["w1"], "city", string="x")
    assert refused.value.status == 403


def test_the_cli_sets_attributes_and_prints_offers(
    server: ServerProcess, admin: Client, worker: Client
) -> None:
    register(worker, "w1", address="127.0.0.2")
    register(worker, "w2", address="127.0.0.3")
    done = run_cli(
        server.url,
        server.token,
        "agents",
        "set-attr",
        "--agent",
        "w1,w2",
        "--key",
        "city",
        "--string",
        "shenzhen",
    )
    assert done.returncode == 0, done.stderr
    offers = run_cli(server.url, server.token, "offers").stdout.splitlines()
    assert offers[0].split() == [
        "INDEX",
        "IP",
        "HOSTNAME",
        "CPUS",
        "MEM",
        "DISK",
        "GPUS",
        "CITY",
        "SANDBOX",
        "PORTS",
    ]
    assert offers[1].split()[1:3] == ["127.0.0.2", "w1"] and "shenzhen" in offers[1]
    listed = run_cli(server.url, server.token, "agents", "list").stdout
    assert "city=shenzhen" in listed
    bad = run_cli(server.url, server.token, "agents", "set-attr", "--agent", "w1", "--key", "k")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert run_cli(server.url, server.token, "agents", "disable", "w1").returncode == 0
    assert "w1" not in run_cli(server.url, server.token, "offers").stdout


def test_job_constraints_place_on_attributes_and_service_rules_are_refused(
    admin: Client, worker: Client
) -> None:
    register(worker, "w1")
    register(worker, "w2")
    set_attr(admin, ["w1"], "city", string="chengdu")
    set_attr(admin, ["w2"], "city", string="shenzhen")
    job_id = admin.submit(
        {
            "command": ["true"],
            "constraints": {
                "intersectionItem": [
                    {
                        "unionData": [
                            {
                                "name": "city",
                                "operate": "LIKE",
                                "type": 3,
                                "text": {"value": "shenzhen|shanghai"},
                            }
                        ]
                    }
                ]
            },
        }
    )
    assert lease(worker, "w1") == []
    assert lease(worker, "w2") == [job_id]
    unique = [[{"name": "hostname", "operate": "UNIQUE"}]]
    with pytest.raises(APIError) as refused:
        admin.submit({"command": ["true"], "constraints": unique})
    assert refused.value.status == 422 and "UNIQUE" in refused.value.message
