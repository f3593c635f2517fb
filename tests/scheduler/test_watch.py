"""WebSocket streams of a real scheduler: a job's events and log, a tenant's events."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from o11n.client import Client
from tests.servers import ServerProcess


def run_job(worker: Client, job_id: int, lines: list[str], exit_code: int = 0) -> None:
    worker.request(
        "POST", "/api/v1/workers/register", body={"name": "w1", "cpu": 4, "memory": "4G"}
    )
    (grant,) = worker.request("POST", "/api/v1/workers/w1/lease", body={"wait": 5})["jobs"]
    assert grant["id"] == job_id
    base, lease = f"/api/v1/jobs/{job_id}/attempts/1", {"lease_id": grant["lease_id"]}
    worker.request("POST", base + "/start", body=lease)
    for seq, line in enumerate(lines):
        worker.request(
            "POST", base + "/logs", body={**lease, "chunks": [{"seq": seq, "data": line}]}
        )
    worker.request("POST", base + "/result", body={**lease, "exit_code": exit_code})


def collect(client: Client, job_id: int, since: int = 0) -> tuple[threading.Thread, list[Any]]:
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.extend(client.watch(job_id, since=since)))
    thread.start()
    return thread, seen


def test_watch_streams_events_and_log_until_the_end(server: ServerProcess, admin: Client) -> None:
    job_id = admin.submit({"command": ["build"]})
    thread, seen = collect(admin, job_id)
    with Client(server.url, admin.worker_token()) as worker:
        run_job(worker, job_id, ["compiling\n", "linking\n"])
    thread.join(20)
    assert not thread.is_alive()
    events = [m["state"] for m in seen if m["type"] == "event"]
    assert events == ["queued", "assigned", "running", "succeeded"]
    assert [m["data"] for m in seen if m["type"] == "log"] == ["compiling\n", "linking\n"]


def test_watching_a_finished_job_replays_it(server: ServerProcess, admin: Client) -> None:
    job_id = admin.submit({"command": ["build"]})
    with Client(server.url, admin.worker_token()) as worker:
        run_job(worker, job_id, ["out\n"], exit_code=2)
    seen = list(admin.watch(job_id))
    assert [m.get("state") for m in seen if m["type"] == "event"][-1] == "failed"
    last = max(m["id"] for m in seen if m["type"] == "event")
    assert list(admin.watch(job_id, since=last, logs=False)) == []


def test_tenant_stream_has_only_that_tenants_events(server: ServerProcess, admin: Client) -> None:
    alice = admin.create_tenant("alice")["token"]
    url = server.url.replace("http", "ws") + "/api/v1/watch"
    with connect(url, additional_headers={"Authorization": f"Bearer {alice}"}) as ws:
        admin.submit({"command": ["true"]})  # the default tenant's
        with Client(server.url, alice) as client:
            job_id = client.submit({"command": ["true"]})
            client.cancel(job_id)
        first, second = json.loads(ws.recv(10)), json.loads(ws.recv(10))
    assert [(m["job_id"], m["state"]) for m in (first, second)] == [
        (job_id, "queued"),
        (job_id, "cancelled"),
    ]


def test_watch_needs_a_token(server: ServerProcess) -> None:
    url = server.url.replace("http", "ws") + "/api/v1/jobs/1/watch"
    with connect(url) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_watch_of_another_tenants_job_is_not_found(server: ServerProcess, admin: Client) -> None:
    job_id = admin.submit({"command": ["true"]})
    bob = admin.create_tenant("bob")["token"]
    with Client(server.url, bob) as client, pytest.raises(Exception, match="no job"):
        list(client.watch(job_id))
