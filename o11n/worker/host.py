"""What a worker offers by default: this machine's name, cores, memory, arch and OS."""

from __future__ import annotations

import os
import platform
import shutil
import socket
from pathlib import Path


def dies_with_parent(signal_name: str) -> list[str]:
    """A command prefix: what it runs gets SIG`signal_name` when the process that started
    it dies (`setpriv --pdeathsig`; an exec of setpriv costs less than a preexec_fn,
    which rules out vfork). Empty where setpriv is missing."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", signal_name, "--"] if setpriv else []


def hostname() -> str:
    """This machine's host name."""
    return socket.gethostname() or "worker"


def address() -> str:
    """This machine's address as its host name resolves, else 127.0.0.1."""
    try:
        return socket.gethostbyname(hostname())
    except OSError:
        return "127.0.0.1"


def free_disk(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def cores() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory_bytes() -> int:
    """Physical memory of this machine."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_tags() -> dict[str, str]:
    """`arch` (x86_64, aarch64, ...) and `os` (linux, darwin, ...)."""
    return {"arch": platform.machine() or "unknown", "os": platform.system().lower() or "unknown"}
