"""kill -9 of a real scheduler while workers run jobs: every job runs once, none is lost."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from o11n.client import Client
from o11n.core.jobs import Job
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import log_text, wait_final
from tests.servers import ServerProcess, wait_for

JOBS = 2000
SUBMITTERS = 4

# These jobs leave PID files and marks in a folder the test shares with them, which a
# sandboxed job cannot write: they test leases and retries, not isolation.
UNSANDBOXED = ("--sandbox", "off")


class Tickets:
    """A fixed number of submits shared by submitter threads, and what came of them."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.acked: list[int] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            self.left -= 1
            return self.left >= 0 and not self.errors

    def ack(self, job_id: int) -> None:
        with self._lock:
            self.acked.append(job_id)

    def withdraw(self) -> None:
        """Stop the submitters after their current submit."""
        with self._lock:
            self.left = 0


def submitter(server: ServerProcess, spec: dict[str, object], tickets: Tickets) -> None:
    """Submit jobs until the tickets run out, retrying through the crash."""
    try:
        with Client(server.url, server.token, retries=300, backoff=0.02, max_backoff=0.2) as client:
            while tickets.take():
                tickets.ack(client.submit(spec))
    except BaseException as exc:
        tickets.errors.append(exc)


def stored_jobs(client: Client) -> list[Job]:
    jobs: list[Job] = []
    cursor = None
    while True:
        page, cursor = client.jobs(limit=500, cursor=cursor)
        jobs += page
        if cursor is None:
            return jobs


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def idle(server: ServerProcess) -> bool:
    health = httpx.get(server.url + "/healthz", timeout=5).json()
    return health["queued"] == 0 and health["leased"] == 0


@pytest.mark.timeout(400)
def test_every_acknowledged_job_runs_exactly_once_across_a_scheduler_kill(
    start_server: StartServer, start_worker: StartWorker, shared: Path
) -> None:
    server = start_server(lease_seconds=3)
    for name in ("w1", "w2"):
        start_worker(server, name, cpus=2, extra=UNSANDBOXED)
    ran = shared / "ran"
    spec = {"command": f"echo $O11N_JOB_ID >> {ran}", "resources": {"cpu": 0.25}}
    tickets = Tickets(JOBS)
    threads = [
        threading.Thread(target=submitter, args=(server, spec, tickets), daemon=True)
        for _ in range(SUBMITTERS)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(  # submits coming in, jobs running
            lambda: len(tickets.acked) >= JOBS // 3 and len(lines_of(ran)) >= 100,
            timeout=120,
            what=lambda: f"{len(tickets.acked)} acknowledged, {len(lines_of(ran))} ran",
        )
        server.kill()
        at_kill = (len(tickets.acked), len(lines_of(ran)))
        server.start()  # same port and data
    except BaseException:
        tickets.withdraw()
        raise
    finally:
        for thread in threads:
            thread.join(120)
    assert not tickets.errors
    assert len(set(tickets.acked)) == JOBS
    assert at_kill[0] < JOBS and at_kill[1] < at_kill[0]  # the kill came mid-way

    wait_for(lambda: idle(server), timeout=180, what=lambda: f"{len(lines_of(ran))} ran")
    with Client(server.url, server.token) as client:
        stored = stored_jobs(client)
    ran_ids = Counter(int(line) for line in lines_of(ran))
    assert sorted(set(tickets.acked) - set(ran_ids)) == []  # none missing
    assert sorted(i for i, n in ran_ids.items() if n > 1) == []  # none doubled
    assert {job.id for job in stored} == set(ran_ids)
    assert {job.id: job.state for job in stored if job.state != "succeeded"} == {}


def test_a_scheduler_restart_is_invisible_to_a_running_job(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server(lease_seconds=3)
    worker = start_worker(server, "w1", extra=UNSANDBOXED)
    with Client(server.url, server.token) as client:
        job_id = client.submit({"command": "echo before; sleep 3; echo after"})
        wait_for(lambda: log_text(client, job_id) == "before\n")

    server.kill()  # while the job sleeps
    server.start()

    with Client(server.url, server.token) as client:
        job = wait_final(client, job_id)
        assert job.state == "succeeded"
        assert [(a.number, a.outcome) for a in job.attempts] == [(1, "succeeded")]
        assert log_text(client, job_id) == "before\nafter\n"
    assert worker.proc is not None and worker.proc.poll() is None
