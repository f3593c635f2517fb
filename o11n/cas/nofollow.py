"""File operations relative to folder descriptors that follow no link.

The worker writes jobs' input trees into, and reads their outputs from, folders
that a job's leftover process may be changing while it does: a path there is
never resolved by the kernel. Each step opens one name relative to the
descriptor of the folder it is in, with `O_NOFOLLOW`; a link met on the way is
read and followed here, hop by hop, never beyond the folder the walk began in.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from pathlib import Path

from o11n.cas.store import CHUNK
from o11n.errors import BadRequest

MAX_LINKS = 40  # links followed in one path of a tree being laid out, as the kernel allows
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path, beneath: Path | None) -> int:
    """The folder `root`, open: reached from `beneath` one no-follow part at a time, or,
    without `beneath`, opened as its caller named it (a folder of the caller's own)."""
    if beneath is None:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the caller's own
    fd = os.open(beneath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for name in root.relative_to(beneath).parts:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def read_text(folder: int, name: str) -> str:
    """A regular file's text in an open folder; "" when there is none (or it is a link)."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=folder)
    except OSError:
        return ""
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return f.read().decode(errors="replace")


class Folders:
    """The open folders along the path being written, from the destination down (a
    tree's paths come sorted, so each folder is opened once while its entries are
    written)."""

    def __init__(self, root: int, top: str) -> None:
        self.root, self.top = root, top
        self.names: list[str] = []
        self.fds: list[int] = []

    def open(self, parts: list[str]) -> int:
        """The folder at these parts of a tree path, made where it is missing."""
        same = 0
        while same < min(len(parts), len(self.names)) and parts[same] == self.names[same]:
            same += 1
        self._close_from(same)
        for i in range(same, len(parts)):
            fd = child_folder(self.fds[-1] if self.fds else self.root, parts[i])
            if fd is None:  # a link: the tree's own, or one a process swapped in
                fd = resolve(self.root, self.top, parts[: i + 1])
            self.names.append(parts[i])
            self.fds.append(fd)
        return self.fds[-1] if self.fds else self.root

    def close(self) -> None:
        self._close_from(0)
        os.close(self.root)

    def _close_from(self, keep: int) -> None:
        for fd in self.fds[keep:]:
            os.close(fd)
        del self.names[keep:], self.fds[keep:]


def child_folder(parent: int, name: str) -> int | None:
    """The folder `name` of an open folder, open (made when missing); None for a link."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, dir_fd=parent)
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and is_link(parent, name):
            return None
        raise


def resolve(root: int, top: str, parts: list[str]) -> int:
    """The folder `parts` names under `root`, open, its links followed as the tree's
    data: one no-follow hop at a time, `..` taken back on the path walked so far, never
    on the disk. BadRequest when it leads out of the destination (real path `top`)."""
    rel = "/".join(parts)
    todo, stack, hops = list(reversed(parts)), [os.dup(root)], 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) == 1:
                    raise BadRequest(
                        f"{rel[:200]!r} leads out of the work directory through a link"
                    )
                os.close(stack.pop())
            elif name not in ("", "."):
                fd = child_folder(stack[-1], name)
                if fd is not None:
                    stack.append(fd)
                    continue
                hops += 1
                if hops > MAX_LINKS:
                    raise BadRequest(f"{rel[:200]!r} goes through more than {MAX_LINKS} links")
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/") and _inside(top, target) is None:
                    raise BadRequest(
                        f"{rel[:200]!r} leads out of the work directory through a link"
                    )
                if target.startswith("/"):
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                    target = _inside(top, target) or ""
                todo.extend(reversed(target.split("/")))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _inside(top: str, target: str) -> str | None:
    """An absolute link target as a path relative to `top`, or None when it is outside."""
    target = os.path.normpath(target)
    if target == top:
        return ""
    return target[len(top) + 1 :] if target.startswith(top.rstrip("/") + "/") else None


def is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def read_up_to(fd: int, limit: int) -> bytes | None:
    """An open file's bytes, or None when it holds more than `limit`."""
    chunks, size = [], 0
    while chunk := os.read(fd, limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


def pump(src: int, dst: int | None, size_hint: int) -> tuple[str, int]:
    """Read an open file to its end, writing what is read to `dst` (when given); the
    SHA-256 and the size of what was read."""
    hashed, size = hashlib.sha256(), 0
    buffer = bytearray(min(CHUNK, max(size_hint, 0) + 1))
    while n := os.readv(src, [buffer]):
        view = memoryview(buffer)[:n]
        hashed.update(view)
        size += n
        while dst is not None and view:
            view = view[os.write(dst, view) :]
    return hashed.hexdigest(), size
