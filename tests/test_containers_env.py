"""The container test environment holds: podman's Docker API, the registry, the images,
and the engine facts that the container executor relies on. Nothing here is skipped:
without podman these tests fail (run `bash .ci/install-containers` as root)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.containers_env import (
    BUSYBOX,
    BUSYBOX2,
    MISSING,
    HangingRegistry,
    docker_client,
    exec_run,
    exec_stream,
    hanging_registry,
    pull_error,
    pull_with_deadline,
    remove_local,
    run_container,
    split_image,
    wait_exec_pid,
)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    made = docker_client()
    made.images.pull(BUSYBOX)
    yield made
    made.close()


@pytest.fixture
def sleeper(client: docker.DockerClient) -> Iterator[str]:
    """A running container to exec in; its id."""
    container = client.containers.create(BUSYBOX, ["sleep", "600"], network_mode="none")
    container.start()
    yield str(container.id)
    container.remove(force=True)


def test_the_engine_is_podman_through_the_docker_api(client: docker.DockerClient) -> None:
    version = client.version()
    assert version["Version"].startswith("4.")
    assert client.api.api_version == "1.41"
    runtime = [c for c in version["Components"] if c["Name"].startswith("OCI Runtime")]
    assert runtime and "runc" in runtime[0]["Name"]


def test_images_are_pulled_from_the_local_registry_once_removed(
    client: docker.DockerClient,
) -> None:
    for image, mark in ((BUSYBOX, b"1\n"), (BUSYBOX2, b"2\n")):
        remove_local(image, client)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image)
        pulled = client.images.pull(image)
        assert image in pulled.tags and client.images.get(image).id == pulled.id
        assert run_container(client, image, ["cat", "/etc/o11n-image"]).stdout == mark
    assert client.images.get(BUSYBOX).id != client.images.get(BUSYBOX2).id


def test_a_missing_image_s_error_is_in_the_stream_not_in_the_exception(
    client: docker.DockerClient,
) -> None:
    repository, tag = split_image(MISSING)
    events = list(client.api.pull(repository, tag=tag, stream=True, decode=True))
    message = pull_error(events)
    assert message is not None and "manifest unknown" in message, events
    assert message.startswith(f"initializing source docker://{MISSING}: reading manifest 1")
    with pytest.raises(docker.errors.ImageNotFound) as raised:
        client.images.pull(MISSING)
    assert "No such image" in str(raised.value) and "manifest unknown" not in str(raised.value)


def test_streams_apart_and_exit_codes(client: docker.DockerClient) -> None:
    run = run_container(client, BUSYBOX, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (run.exit_code, run.stdout, run.stderr, run.oom_killed) == (3, b"out\n", b"err\n", False)
    assert run_container(client, BUSYBOX, ["false"]).exit_code == 1
    # A SIGKILL-ed process: 128 + 9 (PID 1 itself ignores signals sent from inside).
    killed = run_container(client, BUSYBOX, ["sh", "-c", "sleep 9 & kill -9 $!; wait $!"])
    assert (killed.exit_code, killed.oom_killed) == (137, False)


def test_limits_are_visible_inside(client: docker.DockerClient) -> None:
    script = (
        "cd /sys/fs/cgroup\n"
        "if [ -f memory.max ]; then cat memory.max cpu.max pids.max\n"
        "else cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us"
        " pids/pids.max; fi\n"
    )
    run = run_container(
        client,
        BUSYBOX,
        ["sh", "-c", script],
        mem_limit="64m",
        nano_cpus=500_000_000,
        pids_limit=50,
        network_mode="none",
    )
    assert run.exit_code == 0, run.stderr
    words = run.stdout.split()
    assert words[0] == str(64 * 2**20).encode()
    assert words[1:3] == [b"50000", b"100000"]  # half a CPU
    assert words[-1] == b"50"


def test_out_of_memory_is_flagged_with_137(client: docker.DockerClient) -> None:
    hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
    run = run_container(client, BUSYBOX, hog, mem_limit="16m", network_mode="none")
    assert (run.exit_code, run.oom_killed) == (137, True), run
    # The flag is the cgroup's: a killed child counts though the main process goes on.
    child = ["sh", "-c", " ".join(hog) + "; echo after"]
    run = run_container(client, BUSYBOX, child, mem_limit="16m", network_mode="none")
    assert (run.exit_code, run.stdout, run.oom_killed) == (0, b"after\n", True), run


def test_network_none_leaves_only_loopback(client: docker.DockerClient) -> None:
    script = "ls /sys/class/net; wc -l < /proc/net/route"
    off = run_container(client, BUSYBOX, ["sh", "-c", script], network_mode="none")
    assert off.stdout.split() == [b"lo", b"1"]  # no interface but lo, no route at all
    on = run_container(client, BUSYBOX, ["sh", "-c", script])  # podman's default bridge
    assert b"eth0" in on.stdout.split()


def test_read_only_root_with_a_writable_tmp(client: docker.DockerClient) -> None:
    script = "touch /x 2>&1; echo $?; echo hi > /tmp/y && cat /tmp/y"
    run = run_container(client, BUSYBOX, ["sh", "-c", script], read_only=True, tmpfs={"/tmp": ""})
    assert run.stdout.split(b"\n")[:3] == [b"touch: /x: Read-only file system", b"1", b"hi"]


def test_bind_mount_user_working_dir_and_environment(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    folder = tmp_path / "work"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)  # pytest's tmp_path is 0700; the container's user is nobody
    (folder / "in.txt").write_text("from host\n")
    run = run_container(
        client,
        BUSYBOX,
        ["sh", "-c", "cat in.txt; id -u; pwd; echo $GREETING; echo made > out.txt"],
        volumes={str(folder): {"bind": str(folder), "mode": "rw"}},
        user="65534:65534",
        working_dir=str(folder),
        environment={"GREETING": "hello"},
        network_mode="none",
    )
    assert run.exit_code == 0, run.stderr
    assert run.stdout.decode().split("\n")[:4] == ["from host", "65534", str(folder), "hello"]
    made = folder / "out.txt"
    assert made.read_text() == "made\n" and made.stat().st_uid == 65534


def test_exec_demuxes_and_reports_its_exit_code(client: docker.DockerClient, sleeper: str) -> None:
    ran = exec_run(client, sleeper, ["sh", "-c", "echo o; echo e >&2; exit 5"])
    assert (ran.exit_code, ran.stdout, ran.stderr) == (5, b"o\n", b"e\n")


def test_an_exec_s_pid_is_a_host_pid_whose_group_can_be_killed(
    client: docker.DockerClient, sleeper: str
) -> None:
    command = ["sh", "-c", "echo up; sleep 300; echo no"]

    def sleeps() -> int:
        ps = exec_run(client, sleeper, ["ps", "-o", "args"]).stdout.decode()
        return ps.count("sleep 300")

    with exec_stream(sleeper, command) as (exec_id, stream):
        assert next(stream) == (b"up\n", None)
        pid = wait_exec_pid(client, exec_id)
        status = Path(f"/proc/{pid}/status").read_text()
        nspid = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()
        assert nspid[1] == str(pid) and len(nspid) == 3  # host pid, then the container's
        assert os.getpgid(pid) == pid  # the exec leads its own process group (and session)
        os.kill(pid, signal.SIGKILL)  # the shell alone: the stream ends, its child lives on
        assert list(stream) == []
    assert client.api.exec_inspect(exec_id)["ExitCode"] == 137
    assert sleeps() == 1

    with exec_stream(sleeper, command) as (exec_id, stream):
        assert next(stream) == (b"up\n", None)
        os.killpg(wait_exec_pid(client, exec_id), signal.SIGKILL)  # all of the exec's group
        assert list(stream) == []
    assert client.api.exec_inspect(exec_id)["ExitCode"] == 137
    assert sleeps() == 1  # only the first exec's orphan is left


def test_a_pull_from_a_hanging_registry_is_cut_at_its_deadline() -> None:
    with HangingRegistry() as registry:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            pull_with_deadline(f"{registry.address}/o11n/hang:1", timeout=1.5)
        assert 1.5 <= time.monotonic() - began < 5
        assert registry.accepted >= 1
        # podman cancelled the pull: its TLS handshake timeout (10 s) would retry by now.
        tried = registry.accepted
        time.sleep(11.5)
        assert registry.accepted == tried


def test_hanging_registry_gives_an_address() -> None:
    with hanging_registry() as address:
        host, port = address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
