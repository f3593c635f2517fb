"""The process executor on real processes: commands, env, timeouts, stops, exit codes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from o11n.core.jobs import JobSpec, ServiceTask
from o11n.worker.executor import Attempt, Ended, Executor


class Captured:
    """Output kept in memory, per stream."""

    def __init__(self) -> None:
        self.streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    async def write(self, stream: str, data: bytes) -> None:
        self.streams[stream] += data

    def text(self, stream: str = "stdout") -> str:
        return self.streams[stream].decode()


def attempt(command: list[str] | str, **fields: object) -> Attempt:
    return Attempt(7, 2, "w1", JobSpec.model_validate({"command": command, **fields}))


async def run(
    tmp_path: Path,
    job: Attempt,
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    keep: bool = False,
) -> tuple[Ended, Captured]:
    out = Captured()
    starts: list[float] = []
    executor = Executor(tmp_path / "work", kill_grace=grace, keep_workdirs=keep)
    ended = await executor.run(job, out, stop or asyncio.Event(), on_start=starts.append)
    assert len(starts) == (0 if ended.kind == "error" else 1)
    return ended, out


async def test_argv_command_and_exit_code(tmp_path: Path) -> None:
    ended, out = await run(tmp_path, attempt(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert (ended.exit_code, ended.signal, ended.kind) == (3, None, None)
    assert out.text() == "out\n" and out.text("stderr") == "err\n"
    assert ended.started_at is not None and ended.ended_at >= ended.started_at


async def test_a_script_runs_under_sh_e(tmp_path: Path) -> None:
    ended, out = await run(tmp_path, attempt("echo one\nfalse\necho never"))
    assert ended.exit_code == 1 and out.text() == "one\n"


async def test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("O11N_TOKEN", "secret-worker-token")
    monkeypatch.setenv("FROM_WORKER", "yes")
    job = attempt("env", env={"GREETING": "hi"}, resources={"cpu": 2})
    _, out = await run(tmp_path, job)
    env = dict(line.split("=", 1) for line in out.text().splitlines() if "=" in line)
    assert env["GREETING"] == "hi" and env["FROM_WORKER"] == "yes"
    assert (env["O11N_JOB_ID"], env["O11N_ATTEMPT"], env["O11N_WORKER"]) == ("7", "2", "w1")
    assert env["O11N_CPUS"] == "2"
    assert "O11N_TOKEN" not in env  # the worker's token never reaches a job


async def test_a_service_task_gets_its_port_env_from_the_scheduler_set_field(
    tmp_path: Path,
) -> None:
    task = ServiceTask(service="build/web", index=3, host_ip="127.0.0.9", ports={"HTTP": 31005})
    _, out = await run(tmp_path, attempt("env", env={"MODE": "x"}, service=task))
    env = dict(line.split("=", 1) for line in out.text().splitlines() if "=" in line)
    assert (env["PORT_HTTP"], env["O11N_HOST_IP"]) == ("31005", "127.0.0.9")
    assert (env["O11N_SERVICE"], env["O11N_TASK"], env["MODE"]) == ("build/web", "3", "x")


async def test_each_attempt_gets_a_fresh_workdir_removed_afterwards(tmp_path: Path) -> None:
    _, out = await run(tmp_path, attempt("pwd; ls -A | wc -l; touch left-behind"))
    cwd, entries = out.text().split()
    assert Path(cwd) == tmp_path / "work" / "job-7-2" and entries == "0"
    assert not Path(cwd).exists()
    await run(tmp_path, attempt("touch kept"), keep=True)
    assert (tmp_path / "work" / "job-7-2" / "kept").exists()


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    script = "sleep 300 & echo $! > child.pid; sleep 300"
    began = time.monotonic()
    ended, _ = await run(tmp_path, attempt(script, timeout=0.5), keep=True)
    assert ended.kind == "timeout" and "timed out after 0.5s" in (ended.reason or "")
    assert ended.signal == signal.SIGTERM and ended.exit_code == 128 + signal.SIGTERM
    assert time.monotonic() - began < 10
    child = int((tmp_path / "work" / "job-7-2" / "child.pid").read_text())
    assert not _alive(child)


async def test_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    job = attempt(
        [
            "python3",
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print('ready', flush=True); time.sleep(300)",
        ],
        timeout=0.5,
    )
    ended, out = await run(tmp_path, job, grace=0.3)
    assert ended.kind == "timeout" and ended.signal == signal.SIGKILL
    assert out.text() == "ready\n"


async def test_stop_ends_the_attempt_as_lost(tmp_path: Path) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    ended, _ = await run(tmp_path, attempt(["sleep", "300"]), stop=stop)
    assert ended.kind == "lost" and ended.signal == signal.SIGTERM


@pytest.mark.parametrize(
    ("program", "why"),
    [
        ("/no/such/program", "No such file"),
        ("no-such-command-x", "command not found"),
        ("/etc/os-release", "Permission denied"),
        ("./missing.sh", "No such file"),
    ],
)
async def test_a_program_that_cannot_run_is_an_error(
    tmp_path: Path, program: str, why: str
) -> None:
    ended, _ = await run(tmp_path, attempt([program]))
    assert ended.kind == "error" and f"cannot run {program!r}: {why}" in (ended.reason or "")
    assert ended.started_at is None


async def test_the_command_dies_with_the_worker(tmp_path: Path) -> None:
    from o11n.worker.executor import DEATH_GUARD

    assert DEATH_GUARD[:3] == [shutil.which("setpriv"), "--pdeathsig", "KILL"]


async def test_leftover_background_processes_are_killed(tmp_path: Path) -> None:
    ended, _ = await run(tmp_path, attempt("sleep 300 & echo $! > bg.pid", timeout=30), keep=True)
    assert ended.exit_code == 0
    assert not _alive(int((tmp_path / "work" / "job-7-2" / "bg.pid").read_text()))


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False  # a zombie waiting for its (now gone) parent's reaper
        time.sleep(0.05)
    return True
