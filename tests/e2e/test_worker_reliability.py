"""Real workers that die, freeze, get cancels and drain: jobs run once, results stay true."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from o11n.client import Client
from o11n.core.jobs import Job
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import log_chunks, log_text, wait_final, wait_running
from tests.servers import run_cli, running, wait_for

CANCEL_BOUND_SECONDS = 2.0

# These jobs leave PID files and marks in a folder the test shares with them, which a
# sandboxed job cannot write: they test leases and retries, not isolation.
UNSANDBOXED = ("--sandbox", "off")


def test_a_job_on_a_worker_killed_with_sigkill_runs_again_on_another(
    start_server: StartServer, start_worker: StartWorker, shared: Path
) -> None:
    server = start_server(lease_seconds=2)
    workers = {name: start_worker(server, name, extra=UNSANDBOXED) for name in ("w1", "w2")}
    script = f"""
        echo "attempt $O11N_ATTEMPT started"
        echo $$ > {shared}/attempt-$O11N_ATTEMPT.pid
        if [ "$O11N_ATTEMPT" = 1 ]; then exec sleep 300; fi
        echo "work done by attempt $O11N_ATTEMPT"
    """
    with Client(server.url, server.token) as client:
        job_id = client.submit({"command": script})
        first = workers[wait_running(client, job_id).attempts[0].worker]
        pid_file = shared / "attempt-1.pid"
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()))
        assert running(pid)

        first.kill()

        wait_for(
            lambda: not first.job_processes(job_id),
            timeout=10,
            what=f"the job's process {pid} outlived its worker killed with SIGKILL",
        )
        job = wait_final(client, job_id)
        assert job.state == "succeeded"
        assert [a.outcome for a in job.attempts] == ["lost", "succeeded"]
        assert job.attempts[1].worker != first.name
        assert [e.state for e in client.events(job_id)].count("succeeded") == 1
        second_output = "".join(c["data"] for c in log_chunks(client, job_id) if c["attempt"] == 2)
        assert second_output == "attempt 2 started\nwork done by attempt 2\n"
        assert "work done by attempt 1" not in log_text(client, job_id)


def test_a_frozen_workers_late_result_is_refused(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server(lease_seconds=2)
    workers = {name: start_worker(server, name, extra=UNSANDBOXED) for name in ("w1", "w2")}
    script = 'sleep 3; echo "attempt $O11N_ATTEMPT"; exit $((O11N_ATTEMPT + 10))'
    with Client(server.url, server.token) as client:
        job_id = client.submit({"command": script})
        frozen = workers[wait_running(client, job_id).attempts[0].worker]
        frozen.pause()  # past its lease: attempt 1 runs on, unreported, and exits 11
        try:
            wait_for(  # the other worker took the job over
                lambda: running_elsewhere(client.get(job_id), frozen.name),
                what=lambda: f"job {job_id}: {client.get(job_id)!r}",
            )
        finally:
            frozen.resume()

        wait_final(client, job_id)
        wait_for(  # the late result of attempt 1 reached the scheduler
            lambda: f"report on job {job_id} refused" in frozen.log_text(),
            what=lambda: frozen.log_text()[-3000:],
        )
        job = client.get(job_id)
        assert [(a.outcome, a.exit_code) for a in job.attempts] == [
            ("lost", None),
            ("failure", 12),
        ]
        assert job.state == "failed"
        assert job.exit_code == 12  # attempt 2 held the lease; attempt 1 exited 11
        assert log_text(client, job_id) == "attempt 2\n"


def running_elsewhere(job: Job, worker: str) -> bool:
    """True once the job runs, or has ended, on a worker other than `worker`."""
    latest = job.attempts[-1] if job.attempts else None
    return latest is not None and latest.worker != worker and latest.state != "assigned"


def test_a_cancel_stops_the_whole_process_tree_within_two_seconds(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    worker = start_worker(server, "w1", extra=UNSANDBOXED)
    with Client(server.url, server.token) as client:
        job_id = client.submit({"command": ["sh", "-c", "sleep 300 & sleep 300; wait"]})
        wait_running(client, job_id)
        wait_for(  # the shell and both sleeps
            lambda: len(worker.job_processes(job_id)) == 3,
            what=lambda: f"job processes: {worker.job_processes(job_id)}",
        )

        assert client.cancel(job_id) == "cancelled"
        cancelled_at = time.monotonic()
        while worker.job_processes(job_id) and time.monotonic() - cancelled_at < 30:
            time.sleep(0.01)
        gone_after = time.monotonic() - cancelled_at

        assert gone_after < CANCEL_BOUND_SECONDS, f"job processes lived {gone_after:.2f}s"
        assert wait_final(client, job_id).state == "cancelled"
        next_job = client.submit({"command": ["true"]})  # the worker's slot is free again
        assert wait_final(client, next_job).state == "succeeded"


def test_sigterm_drains_a_worker_it_finishes_its_job_takes_no_new_one_and_exits(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    worker = start_worker(server, "w1", extra=UNSANDBOXED)
    with Client(server.url, server.token) as client:
        running_job = client.submit({"command": "sleep 3; echo finished"})
        wait_running(client, running_job)

        worker.signal(signal.SIGTERM)
        wait_for(lambda: "draining" in worker.log_text(), what=worker.log_text)
        new_job = client.submit({"command": ["true"]})

        assert worker.wait(60) == 0
        finished = client.get(running_job)
        assert finished.state == "succeeded"
        assert log_text(client, running_job) == "finished\n"
        untouched = client.get(new_job)
        assert untouched.state == "queued" and untouched.attempts == []


def test_o11n_workers_drain_makes_a_worker_finish_its_job_and_exit(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    worker = start_worker(server, "w1", extra=UNSANDBOXED)
    with Client(server.url, server.token) as client:
        running_job = client.submit({"command": "sleep 3; echo finished"})
        wait_running(client, running_job)

        drained = run_cli(server.url, server.token, "workers", "drain", "w1")
        assert drained.returncode == 0, drained.stderr
        assert drained.stdout == "worker w1 draining\n"
        new_job = client.submit({"command": ["true"]})

        assert worker.wait(60) == 0
        assert client.get(running_job).state == "succeeded"
        assert log_text(client, running_job) == "finished\n"
        untouched = client.get(new_job)
        assert untouched.state == "queued" and untouched.attempts == []
