"""Real scheduler processes for tests: start, wait until healthy, kill, restart."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from tests.containers_env import remove_containers_of

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`o11n server` in a subprocess on a free port, with its own data folder."""

    def __init__(
        self,
        data_dir: Path,
        db: str | None = None,
        lease_seconds: float = 30.0,
        reapi: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.db = db
        self.lease_seconds = lease_seconds
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reapi_port = free_port() if reapi else None
        self.extra = extra
        self._log_start = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def start(self) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "o11n",
            "server",
            "--port",
            str(self.port),
            "--data",
            str(self.data_dir),
            "--lease-seconds",
            str(self.lease_seconds),
        ]
        if self.db:
            args += ["--db", self.db]
        if self.reapi_port:
            args += ["--reapi-port", str(self.reapi_port)]
        args += self.extra
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200 and (
                    not self.reapi_port or b"Remote Execution API on" in self._log_since_start()
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not healthy in {timeout}s: {self.log.read_text()[-3000:]}")

    def _log_since_start(self) -> bytes:
        with self.log.open("rb") as log:
            log.seek(self._log_start)
            return log.read()

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, what: str | Callable[[], str] = ""
) -> T:
    """Poll `condition` until it returns something truthy (and return it), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"not true within {timeout:g}s: {detail}")
        time.sleep(0.05)


def environ(pid: int) -> dict[str, str]:
    """A process's environment; empty if it is gone, a zombie, or not ours."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def running(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def processes_with(**env: str) -> list[int]:
    """Live processes whose environment holds every NAME=VALUE given."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            seen = environ(int(entry.name))
            if seen and all(seen.get(k) == v for k, v in env.items()):
                found.append(int(entry.name))
    return [pid for pid in found if running(pid)]


def kill_all_with(**env: str) -> None:
    """SIGKILL every process whose environment holds every NAME=VALUE given."""
    for pid in processes_with(**env):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class WorkerProcess:
    """`o11n worker` in a subprocess, with its own work folder and log file.

    The worker and every job process it starts carry `E2E_OWNER=<owner>` in their
    environment (o11n passes the worker's environment to jobs), so a test can find
    them, and clean them all up even when a job outlives its worker.
    """

    def __init__(
        self,
        server: ServerProcess,
        name: str,
        folder: Path,
        *,
        cpus: float = 1,
        memory: str = "1G",
        kill_grace: float = 10.0,
        drain_timeout: float = 600.0,
        extra: tuple[str, ...] = (),
        token: str | None = None,
    ) -> None:
        self.server = server
        self.token = token  # default: the admin token
        self.name = name
        self.workdir = folder / name
        self.log = folder / f"{name}.log"
        self.owner = uuid.uuid4().hex
        self.options = [
            "--cpus",
            str(cpus),
            "--memory",
            memory,
            "--kill-grace",
            str(kill_grace),
            "--drain-timeout",
            str(drain_timeout),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> WorkerProcess:
        args = [sys.executable, "-m", "o11n", "worker", "--server", self.server.url]
        token_file = self.workdir.with_name(f"{self.workdir.name}.token")
        args += ["--token-file", str(token_file), "--name", self.name]
        args += ["--workdir", str(self.workdir), "--log-level", "info", *self.options]
        env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
        env["E2E_OWNER"] = self.owner
        self.workdir.mkdir(parents=True, exist_ok=True)
        token_file.write_text(self.token or self.server.token)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def job_processes(self, job_id: int, attempt: int | None = None) -> list[int]:
        """Live processes this worker started for a job (or one attempt of it)."""
        env = {"E2E_OWNER": self.owner, "O11N_JOB_ID": str(job_id)}
        if attempt is not None:
            env["O11N_ATTEMPT"] = str(attempt)
        return processes_with(**env)

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no chance to report, drain or clean up."""
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        """The worker's exit code, once it exits by itself within `timeout` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.name} still running after {timeout:g}s: {self.log_text()[-3000:]}"
            ) from None

    def stop(self) -> None:
        """Clean up: the worker and whatever its jobs left, whatever state they are in."""
        self.resume()
        self.kill()
        kill_all_with(E2E_OWNER=self.owner)
        remove_containers_of(self.workdir)  # its warm containers: killed, it could not


def run_cli(
    url: str, token: str, *args: str, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `o11n ARGS...` against a scheduler, as a user at a shell would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    env.update(O11N_SERVER=url, O11N_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "o11n", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
