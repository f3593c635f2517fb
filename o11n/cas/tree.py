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

import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pathspec import GitIgnoreSpec

from o11n.cas.store import check_digest, digest_file
from o11n.errors import BadRequest

FORMAT = "o11n-tree/1"
IGNORE_FILES = (".gitignore", ".o11nignore")
ALWAYS_IGNORED = frozenset({".git", ".o11n"})  # history, and the local scheduler's secrets
MAX_PATH = 4096
LITERAL = "./"  # a pattern that begins so is a path, not a glob


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


def scan(
    root: Path,
    *,
    ignore_files: bool = True,
    only: Callable[[str], bool] | None = None,
    folders: Callable[[str], bool] | None = None,
) -> tuple[Tree, dict[str, Path]]:
    """A folder as a tree, and where each blob's content is on disk.

    With `ignore_files`, what `.gitignore` and `.o11nignore` files exclude is
    left out (each applies to its own folder and those below it), as are `.git`
    and `.o11n`. With `only`, just the paths it accepts are taken. Folders are
    implied by what they hold; an empty one is kept (as a folder entry) only when
    `folders` accepts it too, as a build action's output directories need.
    """
    tree: Tree = {}
    sources: dict[str, Path] = {}
    for path, rel in _walk(root, ignore_files, folders is not None):
        if only is not None and not only(rel):
            continue
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            if folders is not None and folders(rel):
                tree[rel] = Entry(directory=True)
        elif stat.S_ISLNK(info.st_mode):
            tree[rel] = Entry(link=os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            digest = digest_file(path)
            executable = bool(info.st_mode & stat.S_IXUSR)
            tree[rel] = Entry(digest, info.st_size, executable)
            sources.setdefault(digest, path)
    return without_implied_folders(tree), sources


class _Ignores:
    """The `.gitignore` and `.o11nignore` rules in force in a folder and below it."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, GitIgnoreSpec]] = []  # (folder, its rules), outermost first

    def enter(self, base: str, folder: Path) -> None:
        """Rules for the folder `base`: its ancestors' and its own."""
        self.rules = [
            (b, s) for b, s in self.rules if not b or base == b or base.startswith(b + "/")
        ]
        lines = [
            line
            for name in IGNORE_FILES
            if (folder / name).is_file()
            for line in (folder / name).read_text(errors="replace").splitlines()
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


def _walk(root: Path, ignore_files: bool, folders: bool = False) -> Iterator[tuple[Path, str]]:
    """Files and links under `root` with their relative paths, ignored ones left out;
    with `folders`, the folders walked into too."""
    ignores = _Ignores()
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        base = "" if base == "." else base
        if ignore_files:
            ignores.enter(base, Path(folder))
        kept = []
        for name in sorted(dirs):
            rel, full = f"{base}/{name}".lstrip("/"), Path(folder) / name
            if full.is_symlink():
                if not (ignore_files and ignores.ignored(rel, False)):
                    yield full, rel
            elif name not in ALWAYS_IGNORED and not (ignore_files and ignores.ignored(rel, True)):
                kept.append(name)
                if folders:
                    yield full, rel
        dirs[:] = kept
        for name in sorted(files):
            rel = f"{base}/{name}".lstrip("/")
            if not (ignore_files and ignores.ignored(rel, False)):
                yield Path(folder) / name, rel


def lay_out(tree: Tree, dest: Path, blob: Callable[[str], Path]) -> None:
    """Write a tree's files and folders under `dest`, copying each file from
    `blob(digest)`; BadRequest for a path that would lead out of `dest` through one of
    the tree's own links."""
    top = dest.resolve()
    for rel in sorted(tree):
        entry = tree[rel]
        target = dest / PurePosixPath(check_path(rel))
        if not target.parent.resolve().is_relative_to(top):
            raise BadRequest(f"{rel!r} leads out of the work directory through a link")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        if entry.directory:
            target.mkdir(exist_ok=True)
            continue
        if entry.link is not None:
            target.symlink_to(entry.link)
            continue
        assert entry.digest is not None
        shutil.copyfile(blob(entry.digest), target)
        if entry.executable:
            target.chmod(0o755)
