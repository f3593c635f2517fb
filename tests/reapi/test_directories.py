"""REAPI Directory trees to o11n trees and back to ActionResult outputs."""

from __future__ import annotations

import pytest

from o11n.cas.tree import Entry
from o11n.errors import BadRequest, MissingBlobs, NotFound
from o11n.reapi import directories
from o11n.reapi.protos import re_pb2
from tests.reapi.client import digest, directory


def reader(blobs: dict[str, bytes]) -> directories.Read:
    def read(d: re_pb2.Digest) -> bytes:
        if d.hash not in blobs:
            raise NotFound(d.hash)
        return blobs[d.hash]

    return read


def test_an_input_root_becomes_a_tree_of_its_files() -> None:
    blobs: dict[str, bytes] = {}
    root = directory({"a.txt": b"a", "src/run.sh": b"echo", "src/deep/x": b"x"}, blobs)
    walked = directories.walk(reader(blobs), root)
    assert [path for path, _ in walked] == ["", "src", "src/deep"]
    tree = directories.input_tree(walked)
    assert tree["a.txt"] == Entry(digest(b"a").hash, 1, False)
    assert tree["src/run.sh"].executable
    assert set(tree) == {"a.txt", "src/run.sh", "src/deep/x"}


def test_missing_directories_are_named() -> None:
    blobs: dict[str, bytes] = {}
    root = directory({"src/x": b"x"}, blobs)
    walked = directories.walk(reader(blobs), root)
    sub = walked[0][1].directories[0].digest
    del blobs[sub.hash]
    with pytest.raises(MissingBlobs) as caught:
        directories.walk(reader(blobs), root)
    assert caught.value.blobs == [f"blobs/{sub.hash}/{sub.size_bytes}"]


@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_names_that_leave_the_folder_are_refused(name: str) -> None:
    bad = re_pb2.Directory()
    bad.files.add(name=name, digest=digest(b""))
    data = bad.SerializeToString()
    with pytest.raises(BadRequest):
        directories.input_tree(directories.walk(reader({digest(data).hash: data}), digest(data)))


def test_outputs_pick_files_links_and_folders_out_of_the_stored_tree() -> None:
    stored: dict[str, bytes] = {}

    def put(data: bytes) -> re_pb2.Digest:
        stored[digest(data).hash] = data
        return digest(data)

    tree = {
        "out/a": Entry(digest(b"a").hash, 1, True),
        "out/link": Entry(link="a"),
        "dir/x/y": Entry(digest(b"y").hash, 1, False),
        "dir/z": Entry(digest(b"z").hash, 1, False),
    }
    command = re_pb2.Command(
        output_files=["out/a", "out/link", "out/never-made"], output_directories=["dir"]
    )
    files, folders, links = directories.outputs(command, tree, put)
    assert [(f.path, f.is_executable) for f in files] == [("out/a", True)]
    assert [(s.path, s.target) for s in links] == [("out/link", "a")]
    (folder,) = folders
    assert folder.path == "dir"
    got = re_pb2.Tree()
    got.ParseFromString(stored[folder.tree_digest.hash])
    assert [f.name for f in got.root.files] == ["z"]
    assert [d.name for d in got.root.directories] == ["x"]
    (child,) = got.children
    assert [f.name for f in child.files] == ["y"]
    assert got.root.directories[0].digest == digest(child.SerializeToString(deterministic=True))


def test_output_paths_take_precedence_over_the_older_fields() -> None:
    tree = {"o/f": Entry(digest(b"f").hash, 1, False)}
    command = re_pb2.Command(output_paths=["o"], output_files=["o/f"])
    files, folders, _ = directories.outputs(command, tree, lambda data: digest(data))
    assert files == [] and [f.path for f in folders] == ["o"]


def test_empty_directories_in_an_input_root_are_kept() -> None:
    blobs: dict[str, bytes] = {}
    root = directory({"empty/": b"", "deep/er/": b"", "src/a": b"a", "src/": b""}, blobs)
    tree = directories.input_tree(directories.walk(reader(blobs), root))
    folder = Entry(directory=True)
    assert tree == {"empty": folder, "deep/er": folder, "src/a": Entry(digest(b"a").hash, 1)}


def test_an_output_directory_left_empty_has_a_tree_with_an_empty_root() -> None:
    stored: dict[str, bytes] = {}

    def put(data: bytes) -> re_pb2.Digest:
        stored[digest(data).hash] = data
        return digest(data)

    tree = {"out": Entry(directory=True), "holder/inner": Entry(directory=True)}
    command = re_pb2.Command(output_paths=["out", "holder", "never-made"])
    files, folders, links = directories.outputs(command, tree, put)
    assert files == [] and links == [] and [f.path for f in folders] == ["out", "holder"]
    empty, holder = (re_pb2.Tree.FromString(stored[f.tree_digest.hash]) for f in folders)
    assert empty == re_pb2.Tree(root=re_pb2.Directory())
    assert [d.name for d in holder.root.directories] == ["inner"]
    assert holder.root.directories[0].digest == digest(b"")
    assert list(holder.children) == [re_pb2.Directory()]
