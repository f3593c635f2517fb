"""The proof of the resource pool: a real distcc farm placed, discovered and scraped by o11n,
building a real C project (Lua 5.4 from Debian's source package)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from o11n.client import Client
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.distcc_farm import build_with_distcc, copy_source, distcc_log, remote_compiles
from tests.servers import ServerProcess, run_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]
CITIES = {"w1": "shenzhen", "w2": "shanghai", "w3": "shenzhen", "w4": "chengdu"}


def farm_file(**changes: str) -> str:
    """examples/distcc/distcc.yml, scraped every second, with some lines changed."""
    text = (ROOT / "examples" / "distcc" / "distcc.yml").read_text()
    text = text.replace("frequency: 10s", "frequency: 1s")
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def service(client: Client, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.request("GET", f"/api/v1/services/build/{name}")
    return found


def scraped(client: Client, name: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = client.request("GET", f"/api/v1/services/build/{name}/metrics")[
        "tasks"
    ]
    return tasks


def compile_ok(task: dict[str, Any]) -> float:
    return next((s["value"] for s in task["samples"] if s["name"] == "dcc_compile_ok"), -1.0)


def test_lua_builds_on_a_distcc_farm_that_o11n_places_discovers_and_scrapes(
    start_server: StartServer, start_worker: StartWorker, lua_cache: Path, tmp_path: Path
) -> None:
    server = start_server()
    for i, name in enumerate(CITIES, start=2):
        start_worker(server, name, cpus=2, extra=("--address", f"127.0.0.{i}"))
    with Client(server.url, server.token) as client:
        wait_for(lambda: len(client.workers()) == 4, 30, "four workers registered")
        for name, city in CITIES.items():
            body = {"agents": [name], "key": "city", "string": city}
            client.request("POST", "/api/v1/agents/attributes", body=body)
        client.request("POST", "/api/v1/services", body={"service": farm_file()})

        def placed() -> dict[str, Any] | None:
            svc = service(client, "distcc")
            return svc if svc["running"] == 3 else None

        svc = wait_for(placed, 60, lambda: json.dumps(service(client, "distcc")))
        assert sorted(t["agent"] for t in svc["tasks"]) == ["w1", "w2", "w3"]  # not chengdu

        hosts = _hosts(server, "distcc")
        assert len(hosts.split()) == 3 and all(h.endswith("/2") for h in hosts.split())
        src = copy_source(lua_cache, tmp_path / "lua")
        built = build_with_distcc(src, hosts, tmp_path / "distcc", jobs=6)
        log = distcc_log(tmp_path / "distcc")
        assert built.returncode == 0, built.stderr[-2000:] + log.read_text()[-2000:]
        lua = subprocess.run(
            [str(src / "src" / "lua"), "-e", "print(6 * 7)"], capture_output=True, text=True
        )
        assert lua.stdout == "42\n"
        remote = remote_compiles(tmp_path / "distcc")
        assert sum(remote.values()) == len(list((src / "src").glob("*.o")))

        by_task = {t["index"]: f"{t['ip']}:{t['ports']['SERVICE']}" for t in svc["tasks"]}

        def counted() -> list[dict[str, Any]] | None:
            tasks = scraped(client, "distcc")
            ok = len(tasks) == 3 and all(
                t["up"] and compile_ok(t) == remote[by_task[t["task"]]] for t in tasks
            )
            return tasks if ok else None

        tasks = wait_for(counted, 30, lambda: f"{remote} vs {scraped(client, 'distcc')}")
        assert all(compile_ok(t) > 0 for t in tasks)
        assert sum(compile_ok(t) for t in tasks) == sum(remote.values())
        assert "dcc_free_space" in tasks[0]["strings"]
        exported = client._http.get("/metrics").text
        assert 'o11n_scrape_up{agent="w1",service="build/distcc",task=' in exported
        assert "dcc_compile_ok{" in exported
        shown = run_cli(server.url, server.token, "services", "metrics", "distcc", "-n", "build")
        assert "dcc_compile_ok" in shown.stdout


def test_a_client_off_the_allow_list_and_an_impossible_farm(
    start_server: StartServer, start_worker: StartWorker, lua_cache: Path, tmp_path: Path
) -> None:
    server = start_server()
    start_worker(server, "w4", cpus=2, extra=("--address", "127.0.0.5"))
    with Client(server.url, server.token) as client:
        wait_for(lambda: client.workers(), 30, "the worker registered")
        body = {"agents": ["w4"], "key": "city", "string": "shenzhen"}
        client.request("POST", "/api/v1/agents/attributes", body=body)
        denied = farm_file(
            **{
                "name: distcc": "name: denied",
                "instances: 3": "instances: 1",
                "BK_DISTCC_ALLOW: 127.0.0.0/8": "BK_DISTCC_ALLOW: 10.0.0.0/8",
            }
        )
        client.request("POST", "/api/v1/services", body={"service": denied})
        nowhere = farm_file(**{"name: distcc": "name: nowhere", "shenzhen|shanghai": "beijing"})
        client.request("POST", "/api/v1/services", body={"service": nowhere})
        wait_for(lambda: service(client, "denied")["running"] == 1, 60, "denied never ran")

        src = copy_source(lua_cache, tmp_path / "lua")
        built = build_with_distcc(src, _hosts(server, "denied"), tmp_path / "distcc", jobs=2)
        assert built.returncode != 0
        assert "fallbacks are disabled" in distcc_log(tmp_path / "distcc").read_text()

        def down() -> list[dict[str, Any]] | None:
            tasks = scraped(client, "denied")
            return tasks if tasks and not tasks[0]["up"] else None

        (task,) = wait_for(down, 30, lambda: json.dumps(scraped(client, "denied")))
        assert task["error"] and task["samples"] == []
        assert "o11n_scrape_up{" in client._http.get("/metrics").text

        reason = service(client, "nowhere")["reason"] or ""
        assert "city" in reason and "beijing" in reason, reason
        shown = run_cli(server.url, server.token, "services", "inspect", "nowhere", "-n", "build")
        assert "waiting: no agent can take a task of build/nowhere" in shown.stdout


def _hosts(server: ServerProcess, name: str) -> str:
    done = run_cli(
        server.url,
        server.token,
        "services",
        "endpoints",
        name,
        "-n",
        "build",
        "--format",
        "distcc-hosts",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
