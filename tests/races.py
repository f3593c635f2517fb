"""An attacker for symlink-race tests: a separate process that swaps two paths in a
tight loop with one atomic `renameat2(RENAME_EXCHANGE)` each, as a job's leftover
process would to make a folder (or a file) be a link at the wrong moment."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ATTACKER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, stop = (p.encode() for p in sys.argv[1:4])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("ready", flush=True)
swaps = 0
while not os.path.exists(stop):
    for _ in range(200):
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
            swaps += 1
print(swaps, flush=True)
"""


@contextmanager
def swapping(a: Path, b: Path) -> Iterator[None]:
    """While the block runs, another process keeps exchanging `a` and `b` (both exist).
    Afterwards `a` and `b` are as they were before, or exchanged once."""
    stop = a.parent / f".stop-{a.name}"
    argv = [sys.executable, "-c", ATTACKER, str(a), str(b), str(stop)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.01)
        try:
            yield
        finally:
            stop.touch()
            swaps = int(proc.stdout.readline() or 0)
            proc.wait(timeout=10)
            stop.unlink()
    assert swaps > 0, "the attacker never swapped the paths"
