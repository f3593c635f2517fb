"""Real build tools against o11n's Remote Execution API: Bazel 2.1.0 (platform on the
Command, everything through ByteStream), Bazel 4.2.3 (platform on the Action too) and
BuildGrid's bgd (batch blob calls, output_paths), each on a real scheduler and workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from o11n.client import Client as HttpClient
from tests.containers_env import BUSYBOX
from tests.e2e.bazel_tools import (
    BazelClient,
    Workspace,
    bazel_4,
    bazel_21,
    bgd_execute,
    parse_process_summary,
    remote_flags,
    write_workspace,
)
from tests.e2e.conftest import StartServer, StartWorker
from tests.servers import ServerProcess, free_port, wait_for

IMAGE = BUSYBOX


@pytest.fixture
def server(start_server: StartServer, start_worker: StartWorker) -> ServerProcess:
    """A scheduler serving the REAPI with two workers, one of them tagged pool=a."""
    server = start_server(lease_seconds=10.0, reapi=True)
    start_worker(server, "w1", cpus=2, extra=("--tag", "pool=a"))
    start_worker(server, "w2", cpus=2)
    return server


def action_jobs(server: ServerProcess) -> list[dict[str, object]]:
    with HttpClient(server.url, server.token) as http:
        jobs: list[dict[str, object]] = http.request("GET", "/api/v1/jobs", params={"limit": 500})[
            "jobs"
        ]
    return [job for job in jobs if "o11n.reapi.action" in job["labels"]]  # type: ignore[operator]


def built(client: BazelClient, workspace: Workspace) -> dict[str, str]:
    out = client.bazel_bin()
    return {name: (out / name).read_text() for name in workspace.expected}


@pytest.fixture
def bazel2(tmp_path: Path) -> Iterator[tuple[BazelClient, Workspace]]:
    workspace = write_workspace(tmp_path / "ws", 8)
    with BazelClient(bazel_21(), workspace.root, tmp_path / "root") as client:
        yield client, workspace


def test_bazel_2_builds_remotely_then_from_the_action_cache(
    server: ServerProcess, bazel2: tuple[BazelClient, Workspace]
) -> None:
    client, workspace = bazel2
    assert server.reapi_port is not None
    first = client.build(*remote_flags(server.reapi_port, instance_name="ci/linux"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert built(client, workspace) == dict(workspace.expected)
    summary = parse_process_summary(first.stderr)
    ran = action_jobs(server)
    assert summary.remote == len(workspace.expected) == len(ran)
    assert all(job["state"] == "succeeded" for job in ran)

    assert client.clean().returncode == 0
    second = client.build(*remote_flags(server.reapi_port, instance_name="ci/linux"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert built(client, workspace) == dict(workspace.expected)
    assert parse_process_summary(second.stderr).remote_cache_hits == len(workspace.expected)
    assert len(action_jobs(server)) == len(ran)  # no new jobs


def test_bazel_2_platform_properties_on_the_command_place_the_actions(
    server: ServerProcess, bazel2: tuple[BazelClient, Workspace]
) -> None:
    client, workspace = bazel2
    assert server.reapi_port is not None
    flags = remote_flags(server.reapi_port, properties={"pool": "a"})
    result = client.build(*flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert built(client, workspace) == dict(workspace.expected)
    ran = action_jobs(server)
    assert ran and all(job["tags"] == {"pool": "a"} for job in ran)
    with HttpClient(server.url, server.token) as http:
        workers = {http.get(int(str(job["id"]))).attempts[-1].worker for job in ran}
    assert workers == {"w1"}


def test_bazel_2_runs_actions_in_a_container_image(
    start_server: StartServer, start_worker: StartWorker, tmp_path: Path
) -> None:
    server = start_server(lease_seconds=10.0, reapi=True)
    start_worker(server, "c1", cpus=2, extra=("--allow-image", "127.0.0.1:5000/*"))
    workspace = write_workspace(tmp_path / "ws", 3, salt="in-image")
    assert server.reapi_port is not None
    flags = remote_flags(server.reapi_port, properties={"container-image": f"docker://{IMAGE}"})
    with BazelClient(bazel_21(), workspace.root, tmp_path / "root") as client:
        # the image has busybox's sh, not bash; `cat /etc/o11n-image` proves where it ran
        (workspace.root / "BUILD").write_text(
            (workspace.root / "BUILD").read_text()
            + 'genrule(name = "where", outs = ["where.txt"], cmd = "cat /etc/o11n-image > $@")\n'
        )
        result = client.build("--shell_executable=/bin/sh", *flags)
        assert result.returncode == 0, result.stderr[-3000:]
        assert (client.bazel_bin() / "where.txt").read_text().strip() == "1"
        assert built(client, workspace) == dict(workspace.expected)
    ran = action_jobs(server)
    assert ran and all(job["image"] == IMAGE for job in ran)


def test_bazel_4_sends_the_platform_on_the_action(server: ServerProcess, tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path / "ws", 4, salt="bazel-4")
    assert server.reapi_port is not None
    flags = remote_flags(server.reapi_port, properties={"pool": "a"})
    with BazelClient(bazel_4(), workspace.root, tmp_path / "root") as client:
        result = client.build(*flags)
        assert result.returncode == 0, result.stderr[-3000:]
        assert built(client, workspace) == dict(workspace.expected)
        assert client.clean().returncode == 0
        again = client.build(*flags)
        assert again.returncode == 0, again.stderr[-3000:]
        summary = parse_process_summary(again.stderr)
        assert summary.remote_cache_hits == len(workspace.expected)
    ran = action_jobs(server)
    assert len(ran) == len(workspace.expected)
    assert all(job["tags"] == {"pool": "a"} for job in ran)


def test_bgd_executes_with_batch_calls_and_output_paths(
    server: ServerProcess, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "name.txt").write_text("o11n\n")
    assert server.reapi_port is not None
    run = bgd_execute(
        f"http://127.0.0.1:{server.reapi_port}",
        inputs,
        ["/bin/sh", "-c", "mkdir -p out && tr a-z A-Z < name.txt > out/upper.txt; exit 4"],
        output_directory=tmp_path / "downloaded",
        instance_name="bgd",
        output_paths=["out/upper.txt"],
        platform={"pool": "a"},
    )
    assert run.response is not None, run.process.stdout[-2000:] + run.process.stderr[-2000:]
    assert run.response["exit_code"] == 4
    assert (tmp_path / "downloaded" / "out" / "upper.txt").read_text() == "O11N\n"
    (job,) = action_jobs(server)
    assert job["tags"] == {"pool": "a"} and job["labels"]["o11n.reapi.instance"] == "bgd"  # type: ignore[index]


def test_the_readme_path_o11n_up_with_bazel_then_jobs_list(tmp_path: Path) -> None:
    """`o11n up --reapi-port`, `bazel build --remote_executor=...`, `o11n jobs list`."""
    port, reapi_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    data = tmp_path / "data"
    up = subprocess.Popen(
        [
            *(sys.executable, "-m", "o11n", "up", "--workers", "1", "--port", str(port)),
            *("--reapi-port", str(reapi_port), "--data", str(data)),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert up.stdout is not None
        said = wait_for(
            lambda: (line := up.stdout.readline()) and "Remote Execution" in line and line
        )
        assert f"--remote_executor=grpc://127.0.0.1:{reapi_port}" in said
        workspace = write_workspace(tmp_path / "ws", 2, salt="readme")
        with BazelClient(bazel_21(), workspace.root, tmp_path / "root") as client:
            result = client.build(*remote_flags(reapi_port))
            assert result.returncode == 0, result.stderr[-3000:]
            assert built(client, workspace) == dict(workspace.expected)
        env |= {
            "O11N_SERVER": f"http://127.0.0.1:{port}",
            "O11N_TOKEN": (data / "admin-token").read_text().strip(),
        }
        listed = subprocess.run(
            [sys.executable, "-m", "o11n", "jobs", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert listed.count(" action ") == len(workspace.expected)
    finally:
        up.terminate()
        up.wait(30)
        if up.stdout is not None:
            up.stdout.close()
