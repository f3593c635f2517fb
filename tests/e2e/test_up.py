"""`o11n up` as a user runs it: a scheduler and workers in one command, gone on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, kill_all_with, processes_with, run_cli, running, wait_for


class Up:
    """`o11n up --workers 2` in a subprocess; everything it starts carries E2E_OWNER."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = folder / "data"
        self.cwd = folder / "cwd"
        self.owner = uuid.uuid4().hex
        self.stdout: list[str] = []
        self.stderr = folder / "up.stderr"
        self.proc: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> Up:
        self.cwd.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
        env["E2E_OWNER"] = self.owner
        args = ["up", "--workers", "2", "--port", str(self.port), "--data", str(self.data)]
        with self.stderr.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "o11n", *args],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)

    @property
    def token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def children(self) -> dict[int, str]:
        """The processes `up` started, by PID, with their command lines."""
        assert self.proc is not None
        ps = subprocess.run(
            ["ps", "--ppid", str(self.proc.pid), "-o", "pid=,args="],
            capture_output=True,
            text=True,
            check=False,
        )
        rows = (line.strip().split(None, 1) for line in ps.stdout.splitlines())
        return {int(pid): args for pid, args in rows}

    def diagnostics(self) -> str:
        logs = sorted((self.data / "logs").glob("*.log")) if self.data.exists() else []
        tails = [f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs]
        return "\n".join(["".join(self.stdout), self.stderr.read_text(), *tails])

    def kill(self) -> None:
        """Clean up: `up` and everything it started, whatever state they are in."""
        kill_all_with(E2E_OWNER=self.owner)
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self._reader.join(10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    started = Up(tmp_path)
    try:
        yield started.start()
    finally:
        started.kill()


def test_o11n_up_runs_jobs_and_stops_everything_on_ctrl_c(up: Up) -> None:
    wait_for(
        lambda: any(line.startswith(f"o11n is up at {up.url}") for line in up.stdout),
        timeout=60,
        what=up.diagnostics,
    )

    failing = run_cli(up.url, up.token, "submit", "--wait", "--", "sh", "-c", "echo hello; exit 3")
    assert (failing.returncode, failing.stdout) == (3, "hello\n"), failing.stderr
    passing = run_cli(up.url, up.token, "submit", "--wait", "--", "sleep", "1")
    assert (passing.returncode, passing.stdout) == (0, ""), passing.stderr

    children = up.children()
    assert sorted(args.split()[3] for args in children.values()) == ["server", "worker", "worker"]
    assert up.proc is not None
    up.proc.send_signal(signal.SIGINT)
    try:
        code = up.proc.wait(30)
    except subprocess.TimeoutExpired:
        still = f"o11n up still running 30s after SIGINT: {up.diagnostics()}"
        raise AssertionError(still) from None

    assert code == 0, up.diagnostics()
    assert [pid for pid in children if running(pid)] == []
    assert processes_with(E2E_OWNER=up.owner) == []


def test_logs_and_workers_through_the_cli(up: Up) -> None:
    wait_for(
        lambda: any("o11n is up" in line for line in up.stdout), timeout=60, what=up.diagnostics
    )
    script = "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2"
    job_id = run_cli(up.url, up.token, "submit", "--", script).stdout.strip()
    followed = run_cli(up.url, up.token, "jobs", "logs", job_id, "--follow")
    assert (followed.stdout, followed.stderr) == ("line 1\nline 2\nline 3\n", "oops\n")
    again = run_cli(up.url, up.token, "jobs", "logs", job_id)
    assert again.stdout == "line 1\nline 2\nline 3\n"
    listed = run_cli(up.url, up.token, "workers", "list", "--json")
    workers = json.loads(listed.stdout)
    assert len(workers) == 2 and all(w["online"] and w["capacity"]["cpu"] == 1 for w in workers)
    shown = json.loads(run_cli(up.url, up.token, "jobs", "show", job_id, "--json").stdout)
    assert shown["state"] == "succeeded" and shown["attempts"][0]["worker"] in {
        w["name"] for w in workers
    }


def test_o11n_up_gives_its_workers_worker_tokens_that_no_job_can_find(up: Up) -> None:
    wait_for(
        lambda: any(line.startswith(f"o11n is up at {up.url}") for line in up.stdout),
        timeout=60,
        what=up.diagnostics,
    )
    tokens = sorted((up.data / "tokens").iterdir())
    assert len(tokens) == 2
    assert all(t.read_text().startswith("o11n_wrk_") for t in tokens)
    assert all(t.stat().st_mode & 0o077 == 0 for t in tokens)
    assert up.data.stat().st_mode & 0o077 == 0  # the data folder is the scheduler's alone
    workers = [pid for pid, args in up.children().items() if " worker " in args]
    assert len(workers) == 2
    for pid in workers:
        for name in ("environ", "cmdline"):
            assert not re.search(rb"o11n_(adm|wrk|ten)_", Path(f"/proc/{pid}/{name}").read_bytes())
    hunt = (
        "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'"
        " | grep -cE 'o11n_(adm|wrk|ten)_' || true;"
        f" cat {up.data}/admin-token {tokens[0]} 2>&1 || true"
    )
    done = run_cli(up.url, up.token, "submit", "--wait", "--", "sh", "-c", hunt)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0\n") and "o11n_wrk_" not in done.stdout, done.stdout
    assert up.token not in done.stdout
