"""The local provider: each instance is an `o11n worker` process on this machine, with its
type's tags and resources, so elasticity can be seen (and tested) end to end.

Nothing is ever out of stock here, and there are no zones: the first candidate is
started. A stop is a drain (SIGTERM: running jobs finish within the worker's drain
time-out, then it exits); `reclaim` plays the cloud taking a spot instance back
(SIGKILL, no drain), for tests and demonstrations. The workers are children of the
scheduler and drain when it dies (`setpriv --pdeathsig TERM`), so a scheduler that
starts again finds none to adopt and no name taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from o11n.core.capacity import Instance, InstanceType, Launch, started
from o11n.scheduler.auth import write_token
from o11n.worker.host import dies_with_parent

STOP_GRACE_S = 30.0
DRAIN_WITH_US = dies_with_parent("TERM")


@dataclass
class LocalProvider:
    """Starts and stops local worker processes."""

    server_url: str
    token: str
    root: Path  # each worker's work folder and log live under it
    clock: Callable[[], float]
    drain_timeout_s: float = 10.0
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _reclaimed: list[str] = field(default_factory=list)

    async def start(self, launch: Launch, worker: str) -> Instance:
        """Start a worker of the first candidate type."""
        kind = launch.candidates[0]
        folder = self.root / worker
        folder.mkdir(parents=True, exist_ok=True)
        tags = [f"--tag={k}={v}" for k, v in (*kind.tags, *launch.tags)]
        token_file = folder / "token"  # kept out of the worker's argv and environment
        write_token(token_file, self.token)
        argv = [
            *DRAIN_WITH_US,
            *(sys.executable, "-m", "o11n", "worker", "--server", self.server_url),
            *("--token-file", str(token_file)),
            *("--name", worker, "--cpus", f"{kind.cpu:g}", "--memory", str(kind.memory)),
            *("--workdir", str(folder / "work"), "--drain-timeout", f"{self.drain_timeout_s:g}"),
            *tags,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
        with (folder / "worker.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._procs[worker] = proc
        return started(
            launch,
            kind,
            id=worker,
            worker=worker,
            zone=kind.zones[0] if kind.zones else "local",
            now=self.clock(),
            labels={"pid": str(proc.pid)},
        )

    async def stop(self, instance: Instance) -> None:
        """Drain the worker (SIGTERM) and wait for it to exit; SIGKILL past the grace."""
        proc = self._procs.pop(instance.id, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, self.drain_timeout_s + STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def reclaimed(self) -> list[str]:
        """Instances taken back since the last call: reclaimed ones, and any worker process
        that died by itself."""
        gone = [worker for worker, proc in self._procs.items() if proc.poll() is not None]
        for worker in gone:
            self._procs.pop(worker)
        taken, self._reclaimed = self._reclaimed + gone, []
        return list(dict.fromkeys(taken))

    async def existing(self, types: Sequence[InstanceType]) -> list[Instance]:
        """None: the workers of an earlier run drained when it died."""
        return []

    def reclaim(self, worker: str) -> None:
        """Take an instance back as a spot market would: killed at once, no drain."""
        proc = self._procs.get(worker)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._reclaimed.append(worker)
