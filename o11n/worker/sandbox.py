"""The process sandbox: each attempt as an unprivileged uid in its own namespaces.

A process job runs under bubblewrap (`bwrap`: its own pid, ipc, uts and mount
namespaces, and network namespace unless the job asks for the network; killed
when the worker dies), then `setpriv` makes it a uid of its own from the
worker's range, with no supplementary groups and no capabilities (bwrap sets no
new privileges). Inside, the host's root is read-only, `/tmp`, `/var/tmp`,
`/dev/shm` and `/run` are private, the worker's work root is hidden behind an
empty tmpfs with only the attempt's own folder bound back in writable, and
`/proc` shows the attempt's processes only: a job cannot see the worker (its
token), another attempt, or the worker's blob cache.

bubblewrap is chosen over a hand-made `unshare` because it is small, packaged
everywhere, needs no setuid bit where user namespaces are enabled, and sets up
mounts, `/proc` and `/dev` and the death signal in one audited place.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from o11n.errors import BadRequest
from o11n.worker.host import dies_with_parent
from o11n.worker.slots import hand_over as give_to

DEFAULT_UIDS = range(2_100_000, 2_101_000)  # far above any real user's uid
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")  # each a fresh empty tmpfs inside, 1777


def parse_uids(text: str) -> range:
    """`FIRST-LAST` (inclusive) as a range of uids; never 0."""
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit()):
        raise BadRequest(f"{text!r} is not a uid range FIRST-LAST")
    uids = range(int(first), int(last) + 1)
    if not uids or uids.start < 1000:
        raise BadRequest(f"{text!r}: a sandbox uid range must be non-empty and start at 1000")
    return uids


@dataclass
class UidPool:
    """One uid per running attempt, so concurrent attempts never share one."""

    uids: range = DEFAULT_UIDS
    _taken: set[int] = field(default_factory=set)

    def take(self) -> int:
        for uid in self.uids:
            if uid not in self._taken:
                self._taken.add(uid)
                return uid
        raise BadRequest(f"all {len(self.uids)} sandbox uids are in use")

    def give_back(self, uid: int) -> None:
        self._taken.discard(uid)


class Sandbox:
    """Builds the command line that runs an attempt sandboxed.

    As root (a shared worker), bubblewrap sets the namespaces up as root, with every
    capability dropped but those `setpriv` needs to become the attempt's own uid,
    which then drops them too: the job has no capability and no way to gain one.
    A worker that is not root cannot change uids: its jobs keep its uid inside a
    user namespace of their own (weaker: `o11n worker` says so).
    """

    def __init__(self, workdir: Path, uids: range = DEFAULT_UIDS) -> None:
        self.workdir = workdir
        self.pool = UidPool(uids)
        self.bwrap = shutil.which("bwrap")
        self.setpriv = shutil.which("setpriv")
        self.as_root = os.geteuid() == 0

    def missing(self) -> str | None:
        """Why this machine cannot sandbox jobs, or None."""
        if self.bwrap is None or self.setpriv is None:
            return "the sandbox needs bubblewrap (bwrap) and setpriv (util-linux)"
        return None

    def hand_over(self, cwd: Path, run_dir: Path, uid: int) -> None:
        """Give the attempt's folder, as laid out, to its uid (never following a link).
        The folders down to `run_dir` can be entered by anyone: bubblewrap, as root
        without capabilities, must enter it (no other uid can reach the work root)."""
        if not self.as_root:
            return
        give_to(cwd, uid, uid)
        for folder in (run_dir, *run_dir.parents):
            if not folder.is_relative_to(cwd):
                break
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, os.fstat(fd).st_mode & 0o7777 | 0o111)
            finally:
                os.close(fd)

    def argv(
        self, command: list[str], cwd: Path, run_dir: Path, uid: int, network: bool
    ) -> list[str]:
        """`command` as `uid` in fresh namespaces, `cwd` its only writable folder."""
        assert self.bwrap is not None and self.setpriv is not None
        box = [*dies_with_parent("KILL"), self.bwrap]
        box += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
        if not network:
            box.append("--unshare-net")
        if self.as_root:
            box += ["--cap-drop", "ALL"]
            for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
                box += ["--cap-add", cap]
        else:
            box.append("--unshare-user")
        box += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for scratch in SCRATCH:  # private, and writable by the job as on any host
            box += ["--perms", "1777", "--tmpfs", scratch]
        for hidden in ("/run", str(self.workdir)):
            box += ["--tmpfs", hidden]
        box += ["--bind", str(cwd), str(cwd), "--chdir", str(run_dir), "--"]
        if self.as_root:
            box += [
                self.setpriv,
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        return [*box, *command]
