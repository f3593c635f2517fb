"""Container jobs through a real scheduler and worker: o11n submit --image, and a pipeline
whose substages use two different images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from o11n.client import Client
from tests.containers_env import BUSYBOX, BUSYBOX2, docker_client
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import log_text, wait_final
from tests.e2e.test_pipelines import finished, job_ids, start, states
from tests.servers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_submit_image_wait_against_o11n_up(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "o11n",
            "up",
            "--workers",
            "1",
            "--port",
            str(port),
            "--data",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        token_file = tmp_path / "data" / "admin-token"
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if not token_file.exists():
                return False
            with Client(url, token_file.read_text().strip(), retries=0) as client:
                try:
                    return bool(client.workers())
                except Exception:
                    return False

        wait_for(ready, 60, "o11n up never got ready")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "o11n",
                "submit",
                "--image",
                BUSYBOX,
                "--wait",
                "--",
                "sh",
                "-c",
                "cat /proc/self/cgroup; echo ok",
            ],
            env={**env, "O11N_SERVER": url, "O11N_TOKEN": token_file.read_text().strip()},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "ok"
        assert "/libpod_parent/libpod-" in done.stdout  # it ran in a podman container
    finally:
        up.terminate()
        up.wait(30)


def test_a_pipeline_with_two_images(start_server: StartServer, start_worker: StartWorker) -> None:
    server = start_server()
    start_worker(server, "w1", cpus=2)
    text = f"""
name: images
stages:
  - name: build
    substages:
      - name: one
        image: {BUSYBOX}
        run: echo "image $(cat /etc/o11n-image 2>/dev/null || echo 1)" > which.txt; cat which.txt
        artifacts: [which.txt]
  - name: test
    substages:
      - name: two
        image: docker://{BUSYBOX2}
        run: echo "image $(cat /etc/o11n-image) after $(cat which.txt)"
"""
    with Client(server.url, server.token) as client:
        record = finished(client, start(client, text), timeout=120)
        assert record["state"] == "succeeded", states(record)
        one = log_text(client, job_ids(record, "one")[0])
        two = log_text(client, job_ids(record, "two")[0])
    assert one.strip() == "image 1"
    assert two.strip() == "image 2 after image 1"


def test_a_stopped_worker_leaves_no_warm_container(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    """Warm containers outlive their jobs, not their worker: a worker told to stop
    (SIGTERM) removes them before it exits."""
    server = start_server()
    worker = start_worker(server, "warm-1", cpus=1, kill_grace=2.0)
    engine = docker_client()
    label = {"label": "o11n.worker=warm-1"}
    try:
        with Client(server.url, server.token) as client:
            wait_for(client.workers, 30, "the worker registered")
            job_id = client.submit({"command": "echo warm", "image": BUSYBOX})
            assert wait_final(client, job_id, timeout=120).state == "succeeded"
        assert len(engine.api.containers(filters=label)) == 1  # kept warm, running
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert engine.api.containers(all=True, filters=label) == []
    finally:
        engine.close()


def test_a_worker_killed_outright_leaves_no_warm_container_and_its_next_run_no_slot(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    """SIGKILL gives a worker no chance to remove its warm container: the container ends
    by itself (the worker's keep-alive FIFO closes); the next run of the same worker
    (name and work directory) removes it and the slot folders the killed run left,
    before it takes work."""
    server = start_server()
    engine = docker_client()
    label = {"label": "o11n.worker=warm-2"}
    try:
        with Client(server.url, server.token) as client:
            first = start_worker(server, "warm-2", cpus=1, kill_grace=2.0)
            wait_for(client.workers, 30, "the worker registered")
            job_id = client.submit({"command": "echo warm", "image": BUSYBOX})
            assert wait_final(client, job_id, timeout=120).state == "succeeded"
            assert len(engine.api.containers(filters=label)) == 1  # kept warm
            first.kill()
            wait_for(
                lambda: not engine.api.containers(filters=label),
                5,
                "the warm container of the killed run ran on",
            )
            assert list((first.workdir / ".slots").iterdir())
            start_worker(server, "warm-2", cpus=1, kill_grace=2.0)
            wait_for(
                lambda: not engine.api.containers(all=True, filters=label),
                30,
                "the ended container of the killed run was left",
            )
            assert not (first.workdir / ".slots").exists()
    finally:
        engine.close()


def test_a_killed_worker_s_container_stops_at_once_and_the_job_runs_once(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    """kill -9 of a worker running a container job: its container stops within 5 s (the
    lease is 3 s; nothing restarts the worker under its name, as with an autoscaled
    one), and the job's marker, written 6 s into each attempt, is written once: by the
    retry on another worker, which also removes the dead worker's ended container."""
    server = start_server()
    engine = docker_client()
    job = {
        "command": "touch started; sleep 6; echo $O11N_ATTEMPT > marker",
        "image": BUSYBOX,
        "timeout": 60,
    }
    first = start_worker(server, "doomed-1", cpus=1, kill_grace=1.0, extra=("--keep-workdirs",))
    try:
        with Client(server.url, server.token) as client:
            wait_for(client.workers, 30, "the worker registered")
            job_id = client.submit(job)
            wait_for(lambda: list(first.workdir.rglob("started")), 120, "the job started")
            running = {"label": "o11n.worker=doomed-1"}
            assert engine.api.containers(filters=running)
            first.kill()
            killed_at = time.monotonic()
            wait_for(lambda: not engine.api.containers(filters=running), 5, "its container ran on")
            assert time.monotonic() - killed_at < 5
            second = start_worker(
                server, "spare-1", cpus=1, kill_grace=1.0, extra=("--keep-workdirs",)
            )
            assert wait_final(client, job_id, timeout=120).state == "succeeded"
            ended = {"label": "o11n.worker=doomed-1"}  # removed by another worker's start
            assert engine.api.containers(all=True, filters=ended) == []
            time.sleep(2)  # the first attempt's 6 s are over: an orphan would have written
        markers = [*first.workdir.rglob("marker"), *second.workdir.rglob("marker")]
        assert [m.read_text().strip() for m in markers] == ["2"]
    finally:
        engine.close()
