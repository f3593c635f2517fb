"""What a container may reach on the host, and what the host checks of it.

- A slot: the one host folder a container mounts. It is empty between attempts; an
  attempt's folder is laid out elsewhere (where no container reaches), handed to the
  job's uid and moved into the slot for the run, and moved back out once no process
  of the job is left.
- The keep-alive FIFO: the worker holds it open for writing for its whole life; every
  container's first process blocks reading it and ends the container at EOF, which
  the kernel brings when the worker dies, however it dies.
- Leftovers: the processes still in a container's cgroup, read from the host (a
  job cannot fake what the host reads).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

SLOTS = ".slots"  # under the work root; 0700, so no host user walks into a slot
CGROUP_ROOT = Path("/sys/fs/cgroup")


def new_slot(root: Path) -> Path:
    """A fresh, empty slot folder under the work root (root-owned, 0755: the job sees
    its own folder in it and can add nothing beside it)."""
    slots = root / SLOTS
    slots.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(slots, 0o700)
    slot = slots / secrets.token_hex(8)
    slot.mkdir(mode=0o755)
    os.chmod(slot, 0o755)
    return slot


def remove_slots(root: Path) -> None:
    """Remove every slot an earlier run of the worker left (after a crash)."""
    shutil.rmtree(root / SLOTS, ignore_errors=True)


def hand_over(folder: Path, uid: int, gid: int) -> None:
    """Give `folder` and all in it to the job's uid, never following a link. Called
    while no process can reach the folder, so nothing can be swapped meanwhile."""
    if os.geteuid() != 0 or (uid, gid) == (os.getuid(), os.getgid()):
        return  # a worker that is not root runs its container jobs as itself
    for _parent, dirs, files, parent_fd in os.fwalk(folder, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
    os.lchown(folder, uid, gid)


class KeepAlive:
    """A FIFO the worker holds open for its lifetime; read-only to everyone else, so no
    job can open it for writing and keep its container alive past the worker."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        if self._folder is None:
            folder = Path(tempfile.mkdtemp(prefix="o11n-alive-"))
            fifo = folder / "alive"
            os.mkfifo(fifo)
            os.chmod(fifo, 0o444)
            self._fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)  # RDWR: never blocks
            os.chmod(folder, 0o755)  # podman, not the job, walks to it
            self._folder = folder
        return self._folder / "alive"

    def close(self) -> None:
        """Let go of the FIFO: every container still reading it ends."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def held(fifo: Path) -> bool:
    """Does some live process (a worker) still hold this keep-alive FIFO open for
    writing? A read that does not block answers: EOF when nobody does."""
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return bool(os.read(fd, 1))  # nobody writes to it: b"" is EOF, no writer
    except BlockingIOError:
        return True  # a writer, and nothing written
    finally:
        os.close(fd)


def forget(fifo: Path) -> None:
    """Remove a dead worker's keep-alive FIFO and its folder."""
    if fifo.parent.name.startswith("o11n-alive-"):
        shutil.rmtree(fifo.parent, ignore_errors=True)


def forget_dead() -> None:
    """Remove the keep-alive FIFOs of every dead worker on this host (a worker killed
    outright cannot remove its own)."""
    settled = time.time() - 60  # a younger one may be a live worker's, not yet open
    for folder in Path(tempfile.gettempdir()).glob("o11n-alive-*"):
        with contextlib.suppress(OSError):
            if folder.stat().st_mtime < settled and not held(folder / "alive"):
                forget(folder / "alive")


def procs_file(pid: int) -> Path | None:
    """The `cgroup.procs` of the cgroup that process `pid` (a container's first
    process, as the host sees it) is in; None when the host cannot read it (a remote
    engine)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        number, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if "pids" in controllers.split(","):
            candidates.insert(0, CGROUP_ROOT / "pids" / relative)
        elif number == "0" and relative:
            candidates += [CGROUP_ROOT / relative, CGROUP_ROOT / "unified" / relative]
    for candidate in candidates:
        procs = candidate / "cgroup.procs"
        with contextlib.suppress(OSError, ValueError):
            if pid in _pids(procs):
                return procs
    return None


def leftovers(pids: list[int], idle_uid: int) -> list[int]:
    """Those of the container's processes (host pids) that are not its idle ones (they
    run as `idle_uid`, which no job has)."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}").st_uid != idle_uid:
                found.append(pid)
    return found


def wait_alone(procs: Path, first: int, idle_uid: int, timeout: float = 2.0) -> bool:
    """Wait until only the idle processes are left in the container; False if others
    are still there after `timeout` seconds, or its first process (host pid `first`)
    is gone, or the cgroup cannot be read."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pids = _pids(procs)
            if first not in pids:
                return False
            if not leftovers(pids, idle_uid):
                return True
        except (OSError, ValueError):
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def _pids(procs: Path) -> list[int]:
    return [int(line) for line in procs.read_text().split()]
