"""The container runner against real podman (Docker API) and a real local registry."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from o11n.core.jobs import JobSpec, ServiceTask
from o11n.worker.containers import ContainerConfig, ContainerRunner, _network
from o11n.worker.executor import Attempt, Ended, Executor
from tests.containers_env import (
    BUSYBOX,
    BUSYBOX2,
    SOCKET,
    docker_client,
    euid_probe,
    hanging_registry,
    remove_local,
)
from tests.servers import processes_with
from tests.worker.test_executor import Captured

ENGINE = f"unix://{SOCKET}"


@pytest.fixture(params=[True, False], ids=["reuse", "fresh"])
def runner(request: pytest.FixtureRequest) -> Iterator[ContainerRunner]:
    """Both modes: warm containers with one exec per attempt, and one container each."""
    config = ContainerConfig(docker_host=ENGINE, pull_timeout=20, kill_grace=1)
    made = ContainerRunner(dataclasses.replace(config, reuse=request.param))
    yield made
    made.close()


def attempt(command: list[str] | str, image: str = BUSYBOX, **fields: object) -> Attempt:
    spec = JobSpec.model_validate({"command": command, "image": image, **fields})
    return Attempt(7, 1, "w1", spec)


async def run(
    tmp_path: Path,
    runner: ContainerRunner,
    job: Attempt,
    stop: asyncio.Event | None = None,
    mode: str = "auto",
) -> tuple[Ended, Captured]:
    out = Captured()
    executor = Executor(tmp_path / "work", containers=runner, mode=mode, kill_grace=1)
    ended = await executor.run(job, out, stop or asyncio.Event(), on_start=lambda _at: None)
    return ended, out


async def test_pull_on_miss_then_exit_code_and_separate_streams(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    remove_local(BUSYBOX)
    ended, out = await run(tmp_path, runner, attempt("echo out; echo err >&2; exit 3"))
    assert (ended.exit_code, ended.kind) == (3, None), ended
    assert out.text() == "out\n" and out.text("stderr") == "err\n"
    assert ended.started_at is not None and ended.ended_at >= ended.started_at


async def test_the_image_named_is_the_image_used(tmp_path: Path, runner: ContainerRunner) -> None:
    _, first = await run(tmp_path, runner, attempt("cat /etc/o11n-image || echo 1"))
    _, second = await run(tmp_path, runner, attempt("cat /etc/o11n-image", f"docker://{BUSYBOX2}"))
    assert first.text().strip() != second.text().strip() and second.text().strip() == "2"


async def test_a_missing_image_is_an_error_with_the_registry_s_message(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    ended, _ = await run(tmp_path, runner, attempt("true", "127.0.0.1:5000/o11n/none:1"))
    assert ended.kind == "error" and "cannot pull 127.0.0.1:5000/o11n/none:1" in (
        ended.reason or ""
    )
    assert (
        "manifest unknown" in (ended.reason or "").lower()
        or "not found" in (ended.reason or "").lower()
    )


async def test_a_pull_past_its_deadline_is_an_error(tmp_path: Path) -> None:
    config = ContainerConfig(docker_host=ENGINE, pull_timeout=2, kill_grace=1)
    runner = ContainerRunner(config)
    try:
        with hanging_registry() as address:
            began = time.monotonic()
            ended, _ = await run(tmp_path, runner, attempt("true", f"{address}/o11n/hang:1"))
            took = time.monotonic() - began
    finally:
        runner.close()
    assert ended.kind == "error" and "no answer within 2s" in (ended.reason or ""), ended
    assert took < 15


async def test_images_off_the_allow_list_are_refused(tmp_path: Path) -> None:
    runner = ContainerRunner(ContainerConfig(docker_host=ENGINE, allow_images=("docker.io/*",)))
    try:
        ended, _ = await run(tmp_path, runner, attempt("true"))
    finally:
        runner.close()
    assert ended.kind == "error" and "not allowed on this worker" in (ended.reason or "")


async def test_limits_and_isolation_hold_inside(tmp_path: Path, runner: ContainerRunner) -> None:
    script = (
        "cat /sys/fs/cgroup/memory.max 2>/dev/null"
        " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n"
        "ls /sys/class/net\n"
        "if touch /root-is-writable 2>/dev/null; then echo rw; else echo ro; fi\n"
        "touch /tmp/ok && echo tmp-ok\n"
        "echo made > here.txt && cat here.txt\n"
    )
    ended, out = await run(tmp_path, runner, attempt(script, resources={"memory": "64M"}))
    assert ended.exit_code == 0, out.text("stderr")
    lines = out.text().split()
    assert lines[0] == str(64 * 2**20)
    assert "eth0" not in lines and "lo" in lines  # no network unless asked for
    assert "ro" in lines and "tmp-ok" in lines and "made" in lines


async def test_an_out_of_memory_kill_is_reported(tmp_path: Path, runner: ContainerRunner) -> None:
    hog = "dd if=/dev/zero bs=1M count=256 | cat > /tmp/hog; head -c 200m /dev/zero | tail"
    ended, _ = await run(tmp_path, runner, attempt(hog, resources={"memory": "16M"}))
    assert ended.exit_code == 137 and "out of memory" in (ended.reason or ""), ended


async def test_timeout_and_cancel_end_within_two_seconds(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    began = time.monotonic()
    ended, _ = await run(tmp_path, runner, attempt("sleep 60", timeout=1))
    assert ended.kind == "timeout" and time.monotonic() - began < 1 + 2 + 2
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, stop.set)
    began = time.monotonic()
    ended, _ = await run(tmp_path, runner, attempt("sleep 60"), stop=stop)
    assert ended.kind == "lost" and time.monotonic() - began < 1 + 2 + 2


async def test_process_workers_refuse_images_and_container_workers_need_one(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    ended, _ = await run(tmp_path, runner, attempt("true"), mode="process")
    assert ended.kind == "error" and "runs no containers" in (ended.reason or "")
    plain = Attempt(7, 1, "w1", JobSpec.model_validate({"command": "true"}))
    ended, _ = await run(tmp_path, runner, plain, mode="container")
    assert ended.kind == "error" and "only jobs with an image" in (ended.reason or "")


async def test_warm_containers_are_reused_bounded_and_expire(tmp_path: Path) -> None:
    clock = [1000.0]
    config = ContainerConfig(docker_host=ENGINE, warm_per_key=1, idle_timeout=60, kill_grace=1)
    runner = ContainerRunner(config, clock=lambda: clock[0])
    try:
        _, first = await run(tmp_path, runner, attempt("hostname"))
        _, second = await run(tmp_path, runner, attempt("hostname"))
        assert first.text() == second.text()  # the same warm container
        (pool,) = runner.warm.values()
        assert len(pool) == 1
        executor = Executor(tmp_path / "work", containers=runner, kill_grace=1)
        sleeps = [tenant_job("sleep 1", "", n) for n in (71, 72, 73)]  # each its own folder
        await asyncio.gather(*(run_on(executor, job) for job in sleeps))
        assert [len(p) for p in runner.warm.values()] == [1]  # at most warm_per_key kept
        clock[0] += 61
        runner._expire()
        assert runner.warm == {}  # idle past the time-out: removed
    finally:
        runner.close()
    engine = docker_client()
    try:  # and gone from the engine once the runner is closed, even if just dropped
        label = f"o11n.workdir={tmp_path / 'work'}"
        assert engine.api.containers(all=True, filters={"label": label}) == []
    finally:
        engine.close()


async def test_a_dirtied_container_is_discarded(tmp_path: Path) -> None:
    config = ContainerConfig(docker_host=ENGINE, discard_failed=True, kill_grace=1)
    runner = ContainerRunner(config)
    try:
        _, first = await run(tmp_path, runner, attempt("hostname"))
        ended, _ = await run(tmp_path, runner, attempt("exit 4"))
        assert ended.exit_code == 4 and runner.warm == {}  # a failure: not given back
        _, again = await run(tmp_path, runner, attempt("hostname"))
        assert again.text() != first.text()
        ended, _ = await run(tmp_path, runner, attempt("sleep 30", timeout=1))
        assert ended.kind == "timeout" and runner.warm == {}  # killed: discarded
    finally:
        runner.close()


async def test_concurrent_pulls_of_one_image_are_one_pull(tmp_path: Path) -> None:
    runner = ContainerRunner(ContainerConfig(docker_host=ENGINE, pull_timeout=30))
    pulls: list[str] = []
    real = runner._pull_stream

    def counted(image: str) -> None:
        pulls.append(image)
        real(image)

    runner._pull_stream = counted  # type: ignore[method-assign]
    try:
        remove_local(BUSYBOX2)
        await asyncio.gather(*(runner.ensure_image(BUSYBOX2) for _ in range(4)))
        assert pulls == [BUSYBOX2]
        await runner.ensure_image(BUSYBOX2)  # present now: looked up, not pulled
        assert pulls == [BUSYBOX2]
    finally:
        runner.close()


async def test_an_actions_workdir_and_outputs_in_a_container(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    """A build action (REAPI's working_directory, outputs whatever the exit code) runs in
    its folder of the mounted work directory, in both modes."""
    job = attempt(
        "pwd; echo made > out/result.txt; exit 2",
        workdir="pkg/sub",
        outputs=["out/result.txt"],
        outputs_mode="action",
    )
    ended, out = await run(tmp_path, runner, job)
    assert (ended.exit_code, ended.kind) == (2, None), ended
    assert out.text().strip().endswith("/job-7-1/pkg/sub")


async def test_what_a_job_wrote_is_in_its_folder_afterwards(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    """The folder comes back out of the container's slot whole (the temporary folders
    emptied after each exec are the container's own, never the job's folder)."""
    executor = Executor(tmp_path / "work", containers=runner, keep_workdirs=True, kill_grace=1)
    ended, _ = await run_on(executor, tenant_job("mkdir -p out; echo made > out/a.txt", "t", 5))
    assert (ended.exit_code, ended.kind) == (0, None), ended
    assert (tmp_path / "work" / "job-5-1" / "out" / "a.txt").read_text() == "made\n"
    assert list((tmp_path / "work" / ".slots").glob("*/*")) == []  # slots hold nothing now


async def test_output_that_looks_like_the_end_line_is_kept(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    """The warm exec's end line is `\\036` and a random token: a command that prints the
    separator byte, or a line like an end line, keeps its output and its exit code."""
    ended, out = await run(
        tmp_path, runner, attempt(r"printf 'a\036o11n-end-0:0\nb\036'; printf '\036' >&2; exit 5")
    )
    assert (ended.exit_code, ended.kind) == (5, None), ended
    assert out.text() == "a\x1eo11n-end-0:0\nb\x1e" and out.text("stderr") == "\x1e"


# -- attacks: what one tenant's job tries against another, the cache and the host ------


def tenant_job(command: str, tenant: str, job_id: int, **fields: object) -> Attempt:
    spec = JobSpec.model_validate({"command": command, "image": BUSYBOX, **fields})
    return Attempt(job_id, 1, "w1", spec, tenant)


async def run_on(executor: Executor, job: Attempt) -> tuple[Ended, Captured]:
    out = Captured()
    ended = await executor.run(job, out, asyncio.Event(), on_start=lambda _at: None)
    return ended, out


async def test_a_job_reaches_neither_another_job_nor_the_blob_cache(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    """Tenant B's job, running beside tenant A's, looks around its folder's parent and
    tries to read A's folder and rewrite a cached blob."""
    work = tmp_path / "work"
    cache = work / ".cas"
    cache.mkdir(parents=True)
    (cache / "blob").write_text("echo A's build\n")
    executor = Executor(work, containers=runner, kill_grace=1)
    a = tenant_job("echo A-secret > secret.txt; sleep 4", "a", 1)
    b = tenant_job(
        "set +e; sleep 1; ls -a ..; ls -a ../*/ ../.cas; cat ../*/secret.txt;"
        " echo evil > ../.cas/blob; echo evil > ../job-1-1/evil.sh; true",
        "b",
        2,
    )
    (_, _), (ended, out) = await asyncio.gather(run_on(executor, a), run_on(executor, b))
    assert ended.exit_code == 0, out.text("stderr")
    assert "A-secret" not in out.text() and "job-1-1" not in out.text()
    assert ".cas" not in out.text() and "blob" not in out.text()
    assert (cache / "blob").read_text() == "echo A's build\n"


def run_as_nobody(program: Path) -> int | None:
    """What an unprivileged host user gets from running `program`: the euid probe's exit
    code (0: root), or None when it cannot run it at all."""
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(program)],
        capture_output=True,
        timeout=10,
    )
    return None if done.returncode in (126, 127) else done.returncode


def setuid_files(root: Path) -> list[Path]:
    found = []
    for parent, _dirs, files in os.walk(root):
        for name in files:
            path = Path(parent) / name
            with contextlib.suppress(OSError):
                if path.lstat().st_mode & stat.S_ISUID:
                    found.append(path)
    return found


async def test_a_planted_setuid_file_gives_no_host_user_root(runner: ContainerRunner) -> None:
    """A job runs as non-root with no capabilities; the set-user-ID programs it plants,
    in its folder and in the blob cache, give an unprivileged host user no euid 0, while
    the job runs or after."""
    work = Path(tempfile.mkdtemp(prefix="o11n-suid-"))  # traversable, like /tmp/o11n-NAME
    os.chmod(work, 0o755)
    (work / ".cas").mkdir(mode=0o755)
    probe = base64.b64encode(euid_probe()).decode()
    plant = (
        "set +e; id -u; grep CapEff /proc/self/status;"
        f" for at in ./probe ../.cas/probe /tmp/probe; do echo {probe} | base64 -d > $at"
        " && chmod 4755 $at; done; touch planted; sleep 3"
    )
    executor = Executor(work, containers=runner, kill_grace=1)
    try:
        running = asyncio.ensure_future(run_on(executor, tenant_job(plant, "b", 3)))
        for _ in range(200):
            if any(p.name == "planted" for p in work.rglob("planted")) or running.done():
                break
            await asyncio.sleep(0.05)
        while_running = [run_as_nobody(p) for p in setuid_files(work)]
        ended, out = await running
        after = [run_as_nobody(p) for p in setuid_files(work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert ended.exit_code == 0, out.text("stderr")
    assert 0 not in while_running + after, (while_running, after)
    uid, caps = out.text().split("\n")[:2]
    assert uid != "0" and caps.split() == ["CapEff:", "0000000000000000"]


async def test_a_leftover_process_never_reads_another_tenant_s_job(tmp_path: Path) -> None:
    """Tenant B leaves a process that reads every environment it can see; tenant A's job
    runs next on the same worker: it gets its own container and B's process is dead."""
    runner = ContainerRunner(ContainerConfig(docker_host=ENGINE, warm_per_key=1, kill_grace=1))
    executor = Executor(tmp_path / "work", containers=runner, keep_workdirs=True, kill_grace=1)
    spy = (
        "loot=$PWD/loot; hostname;"
        " (while :; do cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"
        ' | grep SECRET_A >> "$loot"; sleep 0.1; done) >/dev/null 2>&1 &'
    )
    try:
        _, b = await run_on(executor, tenant_job(spy, "b", 11))
        _, a = await run_on(
            executor, tenant_job("hostname; sleep 1", "a", 12, env={"SECRET_A": "x1"})
        )
        await asyncio.sleep(0.3)
    finally:
        runner.close()
    assert a.text() != b.text()  # not B's container
    assert processes_with(O11N_JOB_ID="11") == []
    loot = tmp_path / "work" / "job-11-1" / "loot"
    assert "x1" not in (loot.read_text() if loot.exists() else "")


async def test_the_same_tenant_s_next_job_finds_no_leftover(tmp_path: Path) -> None:
    runner = ContainerRunner(ContainerConfig(docker_host=ENGINE, warm_per_key=1, kill_grace=1))
    executor = Executor(tmp_path / "work", containers=runner, kill_grace=1)
    try:
        _, first = await run_on(executor, tenant_job("hostname; sleep 301 & sleep 302 &", "b", 21))
        _, second = await run_on(executor, tenant_job("hostname; ps -o pid,user,args", "b", 22))
    finally:
        runner.close()
    assert first.text().split()[0] == second.text().split()[0]  # the same warm container
    assert "sleep 30" not in second.text(), second.text()


async def test_a_job_without_a_memory_request_has_the_default_limit(
    tmp_path: Path, runner: ContainerRunner
) -> None:
    script = (
        "cat /sys/fs/cgroup/memory.max 2>/dev/null"
        " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    ended, out = await run(tmp_path, runner, attempt(script))
    assert ended.exit_code == 0, out.text("stderr")
    assert out.text().split() == [str(2 * 2**30)]


async def test_the_same_tenant_s_next_job_finds_no_leftover_file(tmp_path: Path) -> None:
    """What a job leaves in the container's own writable places (the temporary folders,
    shared memory, message queues) is gone before the next job of its tenant."""
    runner = ContainerRunner(ContainerConfig(docker_host=ENGINE, warm_per_key=1, kill_grace=1))
    executor = Executor(tmp_path / "work", containers=runner, kill_grace=1)
    places = "/tmp/left /tmp/.left /var/tmp/left /dev/shm/left /dev/mqueue/left"
    try:
        _, first = await run_on(executor, tenant_job(f"hostname; touch {places}", "b", 41))
        _, second = await run_on(executor, tenant_job(f"hostname; ls {places} || true", "b", 42))
    finally:
        runner.close()
    assert first.text().split()[0] == second.text().split()[0]  # the same warm container
    assert second.text().split()[1:] == [], second.text()


async def test_a_forged_end_line_leaves_no_process_for_the_next_job(tmp_path: Path) -> None:
    """A job reads its wrapper's end token from /proc/$PPID/cmdline, prints a fake end
    line at once and runs on: the worker still finds its processes (in the container's
    cgroup, from the host) and does not reuse that container."""
    runner = ContainerRunner(ContainerConfig(docker_host=ENGINE, warm_per_key=1, kill_grace=1))
    executor = Executor(tmp_path / "work", containers=runner, kill_grace=1)
    forge = (
        "tok=$(tr '\\0' '\\n' < /proc/$PPID/cmdline | sed -n 5p); sleep 303 &"
        ' printf "${tok}0\\n"; printf "${tok}0\\n" >&2; sleep 304'
    )
    try:
        ended, _ = await run_on(executor, tenant_job(forge, "b", 31))
        _, second = await run_on(executor, tenant_job("ps -o pid,user,args", "b", 32))
    finally:
        runner.close()
    assert (ended.exit_code, ended.kind) == (0, None), ended  # it did fool the reader
    assert "sleep 30" not in second.text(), second.text()


def test_only_the_scheduler_set_field_gives_a_container_ports_and_a_network() -> None:
    """A job forging a service task's env (O11N_SERVICE, PORT_X, O11N_HOST_IP=0.0.0.0, as
    a stored job from before the door refused them may still have) gets no network and no
    published port; a task with the `service` field gets its ports on its agent's address."""
    forged = {"O11N_SERVICE": "build/web", "PORT_X": "8080", "O11N_HOST_IP": "0.0.0.0"}
    assert _network(attempt("true", env=forged)) == {"network_mode": "none"}
    task = ServiceTask(service="build/web", index=0, host_ip="127.0.0.9", ports={"HTTP": 31005})
    assert _network(attempt("true", service=task)) == {
        "network_mode": "bridge",
        "ports": {"31005/tcp": ("127.0.0.9", 31005)},
    }
