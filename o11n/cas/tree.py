"""Trees of files in the content-addressed store: a workspace, a substage's artifacts.

A tree is a JSON blob mapping relative paths to file entries (digest, size,
executable bit), symbolic links or empty folders, stored like any other blob and
named by its digest. A folder gets an entry only when nothing else in the tree
lies under it (the rest are implied by their contents), so equal trees keep equal
bytes, and a tree without empty folders is written exactly as before they were
known. Paths are checked on the way in, so a tree cannot write outside the
folder it is laid out in.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from pathspec import GitIgnoreSpec

from o11n.cas import nofollow
from o11n.cas.store import check_digest
from o11n.errors import BadRequest, BlobMismatch

FORMAT = "o11n-tree/1"
IGNORE_FILES = (".gitignore", ".o11nignore")
ALWAYS_IGNORED = frozenset({".git", ".o11n"})  # history, and the local scheduler's secrets
MAX_PATH = 4096
LITERAL = "./"  # a pattern that begins so is a path, not a glob
MAX_DEPTH = 256  # folders inside folders: each level holds a descriptor while it is walked
SMALL_FILE = 1024 * 1024  # an output file up to this size is kept in memory, not copied
HELD_BYTES = 64 * 1024 * 1024  # in memory at most, per scan; the rest is copied to disk


@dataclass(frozen=True, slots=True)
class Entry:
    """A file (digest, size, executable), a symbolic link (target) or an empty folder
    (`directory`) in a tree."""

    digest: str | None = None
    size: int = 0
    executable: bool = False
    link: str | None = None
    directory: bool = False

    def as_json(self) -> dict[str, Any]:
        if self.directory:
            return {"dir": True}
        if self.link is not None:
            return {"link": self.link}
        return {"digest": self.digest, "size": self.size, "executable": self.executable}


Tree = dict[str, Entry]


def check_path(path: str) -> str:
    """A relative path in a tree: no leading `/`, no `.` or `..` part, nothing empty."""
    parts = path.split("/")
    if not path or len(path) > MAX_PATH or any(p in ("", ".", "..") for p in parts):
        raise BadRequest(f"{path[:200]!r} is not a relative path inside the tree")
    if "\0" in path:
        raise BadRequest("a path in a tree may not hold a NUL character")
    return path


def to_bytes(tree: Tree) -> bytes:
    """A tree's canonical form (equal trees, equal bytes, equal digests): a folder
    entry with something under it is implied, and left out."""
    tree = without_implied_folders(tree)
    entries = {path: tree[path].as_json() for path in sorted(tree)}
    return json.dumps({"format": FORMAT, "entries": entries}, sort_keys=True).encode()


def from_bytes(data: bytes) -> Tree:
    """A tree from its stored form; BadRequest when it is not one."""
    try:
        loaded = json.loads(data)
        if loaded.get("format") != FORMAT:
            raise ValueError("not an o11n tree")
        tree = {check_path(path): _entry(raw) for path, raw in loaded["entries"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadRequest(f"not a valid tree: {exc}") from None
    return tree


def without_implied_folders(tree: Tree) -> Tree:
    """The tree without the folder entries that other paths in it lie under."""
    if not any(entry.directory for entry in tree.values()):
        return tree
    parents = {path[:i] for path in tree for i, c in enumerate(path) if c == "/"}
    return {p: e for p, e in tree.items() if not (e.directory and p in parents)}


def _entry(raw: dict[str, Any]) -> Entry:
    if raw.get("dir") is True:
        return Entry(directory=True)
    if "link" in raw:
        return Entry(link=str(raw["link"]))
    size = int(raw["size"])
    if size < 0:
        raise ValueError("negative size")
    return Entry(check_digest(str(raw["digest"])), size, bool(raw.get("executable", False)))


def merge(trees: Iterable[Tree]) -> Tree:
    """One tree of several; a path in a later tree replaces the same path in earlier ones."""
    merged: Tree = {}
    for tree in trees:
        merged.update(tree)
    return merged


def matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test of relative paths against globs: `*` and `?` stay inside one folder, `**`
    crosses folders, and a pattern that names a folder matches everything in it.
    A pattern made by `literal` (it begins with `./`) is a path: it matches that path
    and what is under it, and none of its characters is special."""
    regexes = [re.compile(r) for r in map(_regex, patterns) if r is not None]
    return lambda path: any(r.fullmatch(path) for r in regexes)


def literal(path: str) -> str:
    """A pattern that matches exactly `path` (and what is under it), whatever characters
    it holds: a build action's output named `a*.txt` is that file, not a glob. The
    `./` it begins with is dropped by pathlib, so the pattern still names the path."""
    return LITERAL + path.strip("/")


def _regex(pattern: str) -> str | None:
    if pattern.startswith(LITERAL):
        path = pattern[len(LITERAL) :].strip("/")
        return re.escape(path) + "(?:/.*)?" if path else None
    return _glob_regex(pattern.strip().strip("/")) if pattern.strip("/ ") else None


def _glob_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out) + "(?:/.*)?"


def select(tree: Tree, patterns: Iterable[str]) -> Tree:
    """The entries of a tree whose paths match the globs."""
    matches = matcher(patterns)
    return {path: entry for path, entry in tree.items() if matches(path)}


@overload
def scan(
    root: Path,
    *,
    ignore_files: bool = True,
    only: Callable[[str], bool] | None = None,
    folders: Callable[[str], bool] | None = None,
    copy_to: None = None,
    beneath: Path | None = None,
) -> tuple[Tree, dict[str, Path]]: ...


@overload
def scan(
    root: Path,
    *,
    ignore_files: bool = True,
    only: Callable[[str], bool] | None = None,
    folders: Callable[[str], bool] | None = None,
    copy_to: Path,
    beneath: Path | None = None,
) -> tuple[Tree, dict[str, Path | bytes]]: ...


def scan(
    root: Path,
    *,
    ignore_files: bool = True,
    only: Callable[[str], bool] | None = None,
    folders: Callable[[str], bool] | None = None,
    copy_to: Path | None = None,
    beneath: Path | None = None,
) -> tuple[Tree, dict[str, Path]] | tuple[Tree, dict[str, Path | bytes]]:
    """A folder as a tree, and where each blob's content is (on disk, or in memory).

    With `ignore_files`, what `.gitignore` and `.o11nignore` files exclude is
    left out (each applies to its own folder and those below it), as are `.git`
    and `.o11n`. With `only`, just the paths it accepts are taken. Folders are
    implied by what they hold; an empty one is kept (as a folder entry) only when
    `folders` accepts it too, as a build action's output directories need.

    Nothing under `root` is followed: each entry is opened relative to its folder's
    descriptor without following a link, a file is hashed from the descriptor it was
    opened as (a regular file), and an entry swapped for a link meanwhile is taken as
    that link. With `copy_to`, the bytes hashed are kept: a small file's in memory (up
    to HELD_BYTES in all), any other's copied as it is hashed into that folder (as
    `copy_to/<digest>`), and its source is those bytes or that copy, so what is
    uploaded then is what was hashed, whatever happens to `root` afterwards. With
    `beneath`, `root` is opened from that folder one part at a time, following no link
    either (`root` lies in a folder a job could change; `beneath` is one it cannot).
    """
    walk = _Scan(root, only, folders, copy_to, _Ignores() if ignore_files else None)
    top = nofollow.open_beneath(root, beneath)
    try:
        walk.folder(top, "", 0)
    finally:
        os.close(top)
    return without_implied_folders(walk.tree), walk.sources


class _Scan:
    """One scan's rules and what it has found so far."""

    def __init__(
        self,
        root: Path,
        only: Callable[[str], bool] | None,
        folders: Callable[[str], bool] | None,
        copy_to: Path | None,
        ignores: _Ignores | None,
    ) -> None:
        self.root, self.only, self.folders, self.copy_to = root, only, folders, copy_to
        self.ignores = ignores
        self.tree: Tree = {}
        self.sources: dict[str, Path | bytes] = {}
        self.held = 0  # bytes of the sources kept in memory

    def folder(self, fd: int, base: str, depth: int) -> None:
        """Take what the open folder `fd` (at `base`) holds, and walk into its folders."""
        if depth > MAX_DEPTH:
            raise BadRequest(f"{base[:200]!r} is nested deeper than {MAX_DEPTH} folders")
        if self.ignores is not None:
            self.ignores.enter(base, fd)
        with os.scandir(fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            rel = f"{base}/{entry.name}" if base else entry.name
            if entry.is_symlink():
                if not self._ignored(rel, False):
                    self.link(fd, entry.name, rel)
            elif entry.is_dir(follow_symlinks=False):
                if entry.name not in ALWAYS_IGNORED and not self._ignored(rel, True):
                    self._subfolder(fd, entry.name, rel, depth)
            elif entry.is_file(follow_symlinks=False) and not self._ignored(rel, False):
                self.file(fd, entry.name, rel)

    def _subfolder(self, parent: int, name: str, rel: str, depth: int) -> None:
        if self.folders is not None and self._wanted(rel) and self.folders(rel):
            self.tree[rel] = Entry(directory=True)
        try:
            fd = os.open(name, nofollow.DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise
            if nofollow.is_link(parent, name):  # swapped for a link since it was listed
                self.tree.pop(rel, None)
                self.link(parent, name, rel)
            return
        try:
            self.folder(fd, rel, depth + 1)
        finally:
            os.close(fd)

    def link(self, parent: int, name: str, rel: str) -> None:
        if self._wanted(rel):
            self.tree[rel] = Entry(link=os.readlink(name, dir_fd=parent))

    def file(self, parent: int, name: str, rel: str) -> None:
        if not self._wanted(rel):
            return
        try:
            fd = os.open(name, nofollow.FILE_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return  # gone since it was listed
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a link since it was listed
                self.link(parent, name, rel)
                return
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return  # swapped for a folder or a device: not this file any more
            digest, size, source = self._read(fd, info.st_size, rel)
        finally:
            os.close(fd)
        self.tree[rel] = Entry(digest, size, bool(info.st_mode & stat.S_IXUSR))
        self.sources.setdefault(digest, source)

    def _read(self, fd: int, size_hint: int, rel: str) -> tuple[str, int, Path | bytes]:
        """Hash (and with `copy_to`, keep) an open file; its digest, size and source."""
        if self.copy_to is None:
            digest, size = nofollow.pump(fd, None, size_hint)
            return digest, size, self.root / rel
        if size_hint <= SMALL_FILE and self.held + size_hint <= HELD_BYTES:
            data = nofollow.read_up_to(fd, SMALL_FILE)
            if data is not None:
                self.held += len(data)
                return hashlib.sha256(data).hexdigest(), len(data), data
            os.lseek(fd, 0, os.SEEK_SET)  # it grew: copied instead, from the same file
        out, temp = tempfile.mkstemp(dir=self.copy_to, suffix=".part")
        try:
            digest, size = nofollow.pump(fd, out, size_hint)
        except BaseException:
            os.unlink(temp)
            raise
        finally:
            os.close(out)
        os.replace(temp, self.copy_to / digest)
        return digest, size, self.copy_to / digest

    def _wanted(self, rel: str) -> bool:
        return self.only is None or self.only(rel)

    def _ignored(self, rel: str, is_dir: bool) -> bool:
        return self.ignores is not None and self.ignores.ignored(rel, is_dir)


class _Ignores:
    """The `.gitignore` and `.o11nignore` rules in force in a folder and below it."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, GitIgnoreSpec]] = []  # (folder, its rules), outermost first

    def enter(self, base: str, folder: int) -> None:
        """Rules for the folder `base` (open as `folder`): its ancestors' and its own."""
        self.rules = [
            (b, s) for b, s in self.rules if not b or base == b or base.startswith(b + "/")
        ]
        lines = [
            line for name in IGNORE_FILES for line in nofollow.read_text(folder, name).splitlines()
        ]
        if lines:
            self.rules.append((base, GitIgnoreSpec.from_lines(lines)))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self.rules:
            if base and not rel.startswith(base + "/"):
                continue
            sub = rel[len(base) + 1 :] if base else rel
            result = spec.check_file(sub + "/" if is_dir else sub).include
            if result is not None:
                verdict = result  # a deeper folder's rules override
        return verdict


def lay_out(tree: Tree, dest: Path, blob: Callable[[str], Path]) -> None:
    """Write a tree's files, links and folders under `dest`, copying each file from
    `blob(digest)`.

    Nothing under `dest` is resolved by path: each folder is made and opened relative
    to its parent's descriptor without following a link, and each file is created
    new (`O_EXCL`, no-follow) in its folder. A link is the tree's data: it is written,
    and a path of the tree that goes through one is resolved here, one no-follow hop
    at a time, inside `dest`; one that would lead out of `dest` is a BadRequest (so is
    a folder a running process swapped for such a link). Each blob is hashed as it is
    copied: BlobMismatch when its content is not its digest (the copy is removed)."""
    dest.mkdir(parents=True, exist_ok=True)
    folders = nofollow.Folders(os.open(dest, nofollow.DIR_FLAGS), os.path.realpath(dest))
    try:
        for rel in sorted(tree):
            parts = check_path(rel).split("/")
            if len(parts) > MAX_DEPTH:
                raise BadRequest(f"{rel[:200]!r} is nested deeper than {MAX_DEPTH} folders")
            _write(folders.open(parts[:-1]), parts[-1], tree[rel], blob)
    finally:
        folders.close()


def _write(parent: int, name: str, entry: Entry, blob: Callable[[str], Path]) -> None:
    """One entry in its open folder, in place of a file or link of that name."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.unlink(name, dir_fd=parent)
    if entry.directory:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent)
    elif entry.link is not None:
        os.symlink(entry.link, name, dir_fd=parent)
    else:
        assert entry.digest is not None
        _copy_blob(blob(entry.digest), entry, parent, name)


def _copy_blob(source: Path, entry: Entry, parent: int, name: str) -> None:
    """Copy a blob into a new file `name` of the open folder, checking its digest."""
    assert entry.digest is not None
    try:
        src = os.open(source, nofollow.FILE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the blob's file was replaced by a link
            raise BlobMismatch(entry.digest) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise BlobMismatch(entry.digest)
        dst = os.open(name, nofollow.NEW_FILE_FLAGS, 0o666, dir_fd=parent)
        try:
            digest, _ = nofollow.pump(src, dst, entry.size)
            if entry.executable:
                os.fchmod(dst, 0o755)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    if digest != entry.digest:
        os.unlink(name, dir_fd=parent)
        raise BlobMismatch(entry.digest)
