"""The lease watchdog: kills an attempt at its lease deadline, whatever the worker does.

A worker frozen (SIGSTOP, a stuck event loop, a partition) cannot renew its
leases; the scheduler then hands the job to another worker. The attempt still
running here must not finish a job someone else now runs, so a separate
process, started by the worker in a session of its own, holds each attempt's
deadline and kills its processes once the deadline passes without a renewal.
If the worker dies, the watchdog reads the end of its pipe and kills every
attempt it guards at once.

The worker speaks to it over its stdin, one line a message, deadlines in
CLOCK_MONOTONIC seconds (the same clock for every process of a host):

    deadline KEY SECONDS     renew (or set) the attempt's deadline
    guard KEY PID group|pid  the attempt's process group (or process) to kill
    drop KEY                 the attempt has ended
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


def attempt_key(job_id: int, attempt: int) -> str:
    """An attempt's name for the watchdog: `JOB.ATTEMPT`."""
    return f"{job_id}.{attempt}"


@dataclass
class Guarded:
    """What the watchdog knows of one attempt."""

    deadline: float
    pid: int = 0
    group: bool = True


class Guards:
    """The watchdog's state: deadlines and what to kill (pure; `kill` is injected)."""

    def __init__(self, kill: Callable[[Guarded], None] | None = None) -> None:
        self.held: dict[str, Guarded] = {}
        self.kill = kill or _kill

    def apply(self, line: str) -> None:
        """One message from the worker; malformed ones are ignored."""
        parts = line.split()
        with contextlib.suppress(ValueError, IndexError):
            if parts[0] == "deadline":
                self.held.setdefault(parts[1], Guarded(0.0)).deadline = float(parts[2])
            elif parts[0] == "guard":
                guarded = self.held.setdefault(parts[1], Guarded(float("inf")))
                guarded.pid, guarded.group = int(parts[2]), parts[3] == "group"
            elif parts[0] == "drop":
                self.held.pop(parts[1], None)

    def expire(self, now: float) -> float | None:
        """Kill what is past its deadline; seconds until the next deadline (None: none)."""
        nearest = None
        for key, guarded in list(self.held.items()):
            if not guarded.pid:
                continue
            if guarded.deadline <= now:
                log.warning("attempt %s is past its lease deadline: killed", key)
                self.kill(guarded)
                del self.held[key]
            elif nearest is None or guarded.deadline - now < nearest:
                nearest = guarded.deadline - now
        return nearest

    def kill_all(self) -> None:
        for guarded in self.held.values():
            if guarded.pid:
                self.kill(guarded)
        self.held.clear()


def _kill(guarded: Guarded) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if guarded.group:
            os.killpg(guarded.pid, signal.SIGKILL)
        else:
            os.kill(guarded.pid, signal.SIGKILL)


def main() -> None:
    """Run the watchdog on stdin until the worker closes it (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the worker's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    guards = Guards()
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        wait = guards.expire(time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:  # the worker is gone: nothing it ran may go on
            guards.kill_all()
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            guards.apply(line.decode(errors="replace"))


class Watchdog:
    """The worker's side: starts the watchdog process and tells it about attempts."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "o11n.worker.watchdog"],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a signal to the worker's group does not reach it
        )

    def _send(self, line: str) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()

    def deadline(self, key: str, monotonic_deadline: float) -> None:
        """The attempt must be dead by then unless renewed."""
        self._send(f"deadline {key} {monotonic_deadline:.3f}")

    def guard(self, key: str, pid: int, group: bool = True) -> None:
        """What to kill for the attempt: its process group (or one process)."""
        self._send(f"guard {key} {pid} {'group' if group else 'pid'}")

    def drop(self, key: str) -> None:
        """The attempt has ended."""
        self._send(f"drop {key}")

    def close(self) -> None:
        """Stop the watchdog (what it still guards is killed: nothing should be left)."""
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._proc = None


if __name__ == "__main__":
    main()
