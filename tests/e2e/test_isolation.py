"""Tenants' process jobs attack the worker, the scheduler's data and each other.

Each test is the attack itself, run by a real worker against a real scheduler:
the job reads /proc for tokens, reads the data folder, writes outside its
folder, kills another tenant's job; a frozen worker's job tries to finish after
its job was handed to another worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from o11n.client import Client
from tests.containers_env import BUSYBOX
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import log_text, wait_final, wait_running
from tests.servers import ServerProcess, run_cli, wait_for

pytestmark = pytest.mark.timeout(180)


def admin_post(server: ServerProcess, path: str, body: object = None) -> dict[str, str]:
    answer = httpx.post(
        server.url + path, json=body, headers={"Authorization": f"Bearer {server.token}"}
    )
    answer.raise_for_status()
    return dict(answer.json())


def worker_token(server: ServerProcess) -> str:
    return admin_post(server, "/api/v1/workers/tokens")["token"]


def tenant_token(server: ServerProcess, name: str) -> str:
    return admin_post(server, "/api/v1/tenants", {"name": name})["token"]


@pytest.fixture
def exposed_worker(start_server: StartServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A worker started the careless way: its token in argv and in the environment."""
    server = start_server()
    token = worker_token(server)
    workdir = tmp_path / "exposed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    env["O11N_TOKEN"] = token
    argv = [sys.executable, "-m", "o11n", "worker", "--server", server.url, "--token", token]
    argv += ["--name", "exposed", "--workdir", str(workdir), "--cpus", "2"]
    with (tmp_path / "exposed.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield server, token, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


TOKEN_HUNT = r"""
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline /proc/$PPID/environ /proc/$PPID/cmdline; do
  tr '\0' '\n' < "$f" 2>/dev/null
done | grep -o 'o11n_[a-z]*_[A-Za-z0-9_-]*' | sort -u
cat "$DATA/admin-token" 2>/dev/null || true
ls "$DATA" 2>/dev/null || true
echo hunted
"""


def test_a_job_finds_no_token_in_proc_and_cannot_read_the_data_folder(exposed_worker) -> None:  # type: ignore[no-untyped-def]
    server, token, proc = exposed_worker
    with Client(server.url, server.token) as client:
        job_id = client.submit(
            {"command": TOKEN_HUNT, "env": {"DATA": str(server.data_dir.absolute())}}
        )
        job = wait_final(client, job_id)
        out, err = log_text(client, job_id), log_text(client, job_id, "stderr")
    assert job.state == "succeeded", (job, err)
    assert out.endswith("hunted\n")
    assert token not in out and server.token not in out
    assert "o11n_" not in out, out
    assert "admin-token" not in out  # not even the folder's listing
    # The worker itself holds the token in neither place a job could have looked.
    worker_pid = wait_for(lambda: proc.pid if proc.poll() is None else None)
    for name in ("environ", "cmdline"):
        assert token.encode() not in Path(f"/proc/{worker_pid}/{name}").read_bytes()


def test_a_job_writes_nowhere_but_its_own_folder(
    start_server: StartServer, start_worker: StartWorker, tmp_path: Path
) -> None:
    server = start_server()
    start_worker(server, "w1")
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o777)
    loose = Path(f"/tmp/o11n-escape-{uuid.uuid4().hex}")
    script = f"""
        echo inside > mine
        echo pwned > {outside}/planted || true
        echo pwned > {loose} || true
        echo pwned > "$HOME/planted" || true
        touch /usr/local/bin/planted || true
        echo scratch > /tmp/scratch && echo shm > /dev/shm/scratch
        cat mine /tmp/scratch /dev/shm/scratch
    """
    with Client(server.url, server.token) as client:
        job = wait_final(client, client.submit({"command": script}))
        assert (job.state, log_text(client, job.id)) == ("succeeded", "inside\nscratch\nshm\n")
    assert not (outside / "planted").exists()
    assert not loose.exists()
    assert not Path("/usr/local/bin/planted").exists()
    assert not (Path.home() / "planted").exists()


def test_a_tenant_cannot_see_or_signal_another_tenants_job(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "w1", cpus=2)
    mark = uuid.uuid4().hex
    victim = Client(server.url, tenant_token(server, "team-a"))
    attacker = Client(server.url, tenant_token(server, "team-b"))
    with victim, attacker:
        victim_id = victim.submit(
            {"command": "sleep 4; echo alive", "env": {"VICTIM": mark}, "resources": {"cpu": 1}}
        )
        wait_running(victim, victim_id)
        hunt = f"""
            found=$(grep -l {mark} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
            echo "found: $found"
            for pid in $found; do kill -9 "$pid"; done
            ls /proc | grep -c '^[0-9]' || true
        """
        attacker_id = attacker.submit({"command": hunt, "resources": {"cpu": 1}})
        attack = wait_final(attacker, attacker_id)
        seen = log_text(attacker, attacker_id)
        victim_job = wait_final(victim, victim_id)
        assert attack.state == "succeeded"
        assert seen.startswith("found: \n"), seen
        assert int(seen.split()[-1]) <= 4, seen  # its own shell, grep, ls, bwrap's init
        assert (victim_job.state, log_text(victim, victim_id)) == ("succeeded", "alive\n")


@pytest.mark.parametrize("image", [None, BUSYBOX], ids=["process", "container"])
def test_a_frozen_workers_job_is_killed_at_its_lease_deadline(
    start_server: StartServer, start_worker: StartWorker, image: str | None
) -> None:
    """SIGSTOP freezes the worker; its job must not go on to finish after the scheduler
    handed the job to another worker (the watchdog kills it at the lease deadline)."""
    server = start_server(lease_seconds=3)
    frozen = start_worker(server, "frozen", extra=("--keep-workdirs",))
    script = 'echo "fence=$O11N_FENCE"; sleep 8; date +%s > finished; echo finished'
    spec = {"command": script, "retry": {"max_attempts": 2}, "image": image}
    with Client(server.url, server.token) as client:
        job_id = client.submit(spec)
        wait_running(client, job_id)
        frozen.signal(signal.SIGSTOP)
        try:
            start_worker(server, "rescuer")
            wait_running(client, job_id, attempt=2, timeout=30)
            retried_at = time.time()
            job = wait_final(client, job_id, timeout=60)
            time.sleep(1)  # the first attempt would have finished by now, 8 s after its start
            # A container job's folder may still be in its container's slot.
            marks = list(frozen.workdir.rglob(f"job-{job_id}-1/finished"))
            finished_first = float(marks[0].read_text()) if marks else None
        finally:
            frozen.signal(signal.SIGCONT)
        assert job.state == "succeeded" and job.attempt == 2
        assert finished_first is None or finished_first < int(retried_at), (
            f"attempt 1 finished at {finished_first}, after attempt 2 started at {retried_at}"
        )
        assert "fence=2\nfinished\n" in log_text(client, job_id)


def test_a_worker_without_a_sandbox_says_so_in_workers_list_and_offers(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "boxed")
    start_worker(server, "trusted", extra=("--sandbox", "off"))
    with Client(server.url, server.token) as client:
        wait_for(lambda: len(client.workers()) == 2)
    listed = run_cli(server.url, server.token, "workers", "list", "--json")
    tags = {w["name"]: w["tags"]["sandbox"] for w in json.loads(listed.stdout)}
    assert tags == {"boxed": "on", "trusted": "off"}
    offers = run_cli(server.url, server.token, "offers").stdout.splitlines()
    column = offers[0].split().index("SANDBOX")
    rows = {line.split()[2]: line.split()[column] for line in offers[1:]}
    assert rows == {"boxed": "on", "trusted": "off"}


def test_a_sandboxed_job_has_no_network_unless_it_asks(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "w1")
    port = server.url.rsplit(":", 1)[1]
    probe = f"(echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo unreachable"
    with Client(server.url, server.token) as client:
        closed = client.submit({"command": ["bash", "-c", probe]})
        opened = client.submit({"command": ["bash", "-c", probe], "network": True})
        assert wait_final(client, closed).state == "succeeded"
        assert wait_final(client, opened).state == "succeeded"
        assert log_text(client, closed).endswith("unreachable\n")
        assert log_text(client, opened).endswith("reached\n")


def test_a_sandboxed_job_and_all_it_started_die_with_a_killed_worker(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    """kill -9 of the worker: the job and the children it hid in the background (in a
    session of their own, out of its process group) are gone within seconds."""
    server = start_server()
    worker = start_worker(server, "w1")
    script = "setsid sleep 301 & (trap '' HUP TERM; sleep 302) & echo started; sleep 303"
    with Client(server.url, server.token) as client:
        job_id = client.submit({"command": script})
        wait_for(lambda: log_text(client, job_id) == "started\n", 30, "the job started")
    assert len(worker.job_processes(job_id)) >= 3
    worker.kill()
    wait_for(lambda: not worker.job_processes(job_id), 5, "the job's processes ended")
