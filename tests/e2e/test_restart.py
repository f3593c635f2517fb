"""kill -9 of a real scheduler: acknowledged jobs survive, running attempts carry on."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from o11n.client import Client
from tests.servers import ServerProcess

SUBMITTERS = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def submitter(url: str, token: str, stop: threading.Event, acked: dict[str, int]) -> None:
    """Submit one job at a time until told to stop; record each acknowledged id by key."""
    with Client(url, token, retries=200, backoff=0.02, max_backoff=0.2) as client:
        while not stop.is_set():
            key = uuid.uuid4().hex
            job_id = client.submit({"command": ["true"], "idempotency_key": key})
            acked[key] = job_id


def test_acknowledged_submits_survive_kill_9(tmp_path: Path, store: str | None) -> None:
    server = ServerProcess(tmp_path / "data", db=store).start()
    token = server.token
    stop, acked = threading.Event(), {}
    threads = [
        threading.Thread(target=submitter, args=(server.url, token, stop, acked))
        for _ in range(SUBMITTERS)
    ]
    for thread in threads:
        thread.start()
    try:
        while len(acked) < 300:
            time.sleep(0.01)
        server.kill()
        killed_at = len(acked)
        server.start()  # same port and data: the clients retry into the new process
        while len(acked) < killed_at + 300:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    try:
        check_every_job_once(server, acked)
    finally:
        server.stop()


def check_every_job_once(server: ServerProcess, acked: dict[str, int]) -> None:
    with Client(server.url, server.token) as client:
        ids: list[int] = []
        cursor = None
        while True:
            page, cursor = client.jobs(limit=500, cursor=cursor)
            ids += [j.id for j in page]
            keys = {j.idempotency_key for j in page}
            assert None not in keys
            if cursor is None:
                break
    assert len(ids) == len(set(ids))
    assert set(acked.values()) <= set(ids)
    assert len(ids) == len(acked)  # a submit retried across the crash was stored once
    health = httpx.get(server.url + "/healthz").json()
    assert health["queued"] == len(ids)  # every job is back in the index
    url = server.db or f"sqlite:///{server.data_dir / 'o11n.db'}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:  # no half-jobs: every job has its submit event
        orphans = conn.execute(
            text("SELECT count(*) FROM jobs WHERE id NOT IN (SELECT job_id FROM events)")
        ).scalar()
    engine.dispose()
    assert orphans == 0


def test_a_running_attempt_survives_a_scheduler_kill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        with Client(server.url, server.token) as admin:
            job_id = admin.submit({"command": ["sleep", "1"]})
            queued_id = admin.submit({"command": ["true"], "tags": {"arch": "riscv"}})
            worker_token = admin.worker_token()
        with Client(server.url, worker_token, retries=100, backoff=0.05) as worker:
            worker.request(
                "POST", "/api/v1/workers/register", body={"name": "w1", "cpu": 1, "memory": "1G"}
            )
            (grant,) = worker.request("POST", "/api/v1/workers/w1/lease", body={"wait": 5})["jobs"]
            base, lease = f"/api/v1/jobs/{job_id}/attempts/1", {"lease_id": grant["lease_id"]}
            worker.request("POST", base + "/start", body=lease)
            server.kill()
            restarter = threading.Timer(0.5, server.start)
            restarter.start()
            # the worker's calls retry until the new process answers
            worker.request(
                "POST", base + "/logs", body={**lease, "chunks": [{"seq": 0, "data": "done\n"}]}
            )
            restarter.join()
            state = worker.request("POST", base + "/result", body={**lease, "exit_code": 0})
            assert state == {"state": "succeeded"}
        with Client(server.url, server.token) as admin:
            job = admin.get(job_id)
            assert job.state == "succeeded" and len(job.attempts) == 1
            assert admin.get(queued_id).state == "queued"
            assert httpx.get(server.url + "/healthz").json()["queued"] == 1
    finally:
        server.stop()
