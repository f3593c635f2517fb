"""REAPI Directory trees and o11n's trees: an action's input root laid out by a worker,
and a worker's output tree turned into an ActionResult's files, directories and links."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from o11n.cas import tree as trees
from o11n.errors import BadRequest, MissingBlobs, NotFound
from o11n.reapi import digests
from o11n.reapi.protos import parse, re_pb2

Read = Callable[[re_pb2.Digest], bytes]
Put = Callable[[bytes], re_pb2.Digest]
MAX_DIRECTORIES = 100_000


def walk(read: Read, root: re_pb2.Digest) -> list[tuple[str, re_pb2.Directory]]:
    """Every directory of a tree with its path ("" for the root), parents first.
    MissingBlobs names every directory blob that is absent, level by level."""
    found: list[tuple[str, re_pb2.Directory]] = []
    level = [("", digests.checked(root, "input root"))]
    while level:
        loaded, missing = [], []
        for path, digest in level:
            try:
                loaded.append((path, _directory(read(digest), digest)))
            except NotFound:
                missing.append(f"blobs/{digests.text(digest)}")
        if missing:
            raise MissingBlobs(missing)
        found += loaded
        if len(found) > MAX_DIRECTORIES:
            raise BadRequest(f"a tree may hold at most {MAX_DIRECTORIES} directories")
        level = [
            (_join(path, _name(child.name)), digests.checked(child.digest))
            for path, directory in loaded
            for child in directory.directories
        ]
    return found


def input_tree(directories: Iterable[tuple[str, re_pb2.Directory]]) -> trees.Tree:
    """A walked REAPI tree as an o11n tree: its files, links and empty folders."""
    tree: trees.Tree = {}
    for path, directory in directories:
        if path and not (directory.files or directory.symlinks or directory.directories):
            tree[path] = trees.Entry(directory=True)
        for file in directory.files:
            digest = digests.checked(file.digest)
            tree[_join(path, _name(file.name))] = trees.Entry(
                digest.hash, digest.size_bytes, file.is_executable
            )
        for link in directory.symlinks:
            tree[_join(path, _name(link.name))] = trees.Entry(link=link.target)
    return tree


def file_digests(directories: Iterable[tuple[str, re_pb2.Directory]]) -> list[re_pb2.Digest]:
    """The digests of every file in a walked tree."""
    return [file.digest for _, directory in directories for file in directory.files]


def _directory(data: bytes, digest: re_pb2.Digest) -> re_pb2.Directory:
    return parse(re_pb2.Directory, data, f"blob {digests.text(digest)}")


def _name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise BadRequest(f"{name[:200]!r} is not a file name in a Directory")
    return name


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def outputs(
    command: re_pb2.Command, tree: trees.Tree, put: Put
) -> tuple[list[re_pb2.OutputFile], list[re_pb2.OutputDirectory], list[re_pb2.OutputSymlink]]:
    """What a worker stored of a command's outputs, as an ActionResult lists them.

    `output_paths` (REAPI 2.1) is used when the command has it; otherwise
    `output_files` and `output_directories`. A path names a file or link when the
    tree has it, a directory when the tree has entries under it; one that the
    command did not make is left out; an empty directory is one whose Tree has an
    empty root. Each output directory's Tree is stored with `put`.
    """
    files, folders, links = [], [], []
    wanted = list(command.output_paths) or [
        *command.output_files,
        *command.output_directories,
    ]
    for path in dict.fromkeys(p.strip("/") for p in wanted):
        entry = tree.get(path)
        if entry is not None and entry.link is not None:
            links.append(re_pb2.OutputSymlink(path=path, target=entry.link))
        elif entry is not None and entry.digest is not None:
            digest = re_pb2.Digest(hash=entry.digest, size_bytes=entry.size)
            files.append(
                re_pb2.OutputFile(path=path, digest=digest, is_executable=entry.executable)
            )
        else:
            inside = {k[len(path) + 1 :]: v for k, v in tree.items() if k.startswith(path + "/")}
            if inside or (entry is not None and entry.directory):
                tree_digest = put(output_tree(inside).SerializeToString(deterministic=True))
                folders.append(re_pb2.OutputDirectory(path=path, tree_digest=tree_digest))
    return files, folders, links


def output_tree(entries: trees.Tree) -> re_pb2.Tree:
    """An REAPI Tree (root and every child Directory) of the entries of one folder."""
    children: dict[str, re_pb2.Directory] = {}

    def build(prefix: str) -> re_pb2.Directory:
        directory = re_pb2.Directory()
        names = {p[len(prefix) :].split("/", 1)[0] for p in entries if p.startswith(prefix)}
        for name in sorted(names):
            entry = entries.get(prefix + name)
            if entry is None or entry.directory:
                sub = build(prefix + name + "/")
                data = sub.SerializeToString(deterministic=True)
                digest = digests.of(data)
                children[digest.hash] = sub
                directory.directories.add(name=name, digest=digest)
            elif entry.link is not None:
                directory.symlinks.add(name=name, target=entry.link)
            else:
                digest = re_pb2.Digest(hash=entry.digest or "", size_bytes=entry.size)
                directory.files.add(name=name, digest=digest, is_executable=entry.executable)
        return directory

    root = build("")
    return re_pb2.Tree(root=root, children=list(children.values()))


def result_blobs(result: re_pb2.ActionResult, read: Read) -> list[re_pb2.Digest]:
    """Every blob an ActionResult refers to: files, stdout, stderr, output Trees and the
    files in them (a Tree that cannot be read is listed, its files are not)."""
    found = [f.digest for f in result.output_files]
    for d in (result.stdout_digest, result.stderr_digest):
        if d.hash:
            found.append(d)
    for folder in result.output_directories:
        found.append(folder.tree_digest)
        try:
            tree = parse(re_pb2.Tree, read(folder.tree_digest), "an output tree")
        except (NotFound, BadRequest):  # absent, or not a Tree: the caller finds it missing
            continue
        for directory in [tree.root, *tree.children]:
            found += [f.digest for f in directory.files]
    return found
