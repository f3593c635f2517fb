"""Trees: folders as stored listings, ignore files, globs, and laying a tree out safely."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from o11n.cas import tree as trees
from o11n.cas.store import CasStore, digest_of
from o11n.errors import BadRequest, BlobMismatch
from tests.races import swapping


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_scan_leaves_out_what_gitignore_and_o11nignore_exclude(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitignore": "*.o\nbuild/\n!keep.o\n",
            ".o11nignore": "secret.txt\n",
            "src/a.c": "int a;",
            "src/a.o": "obj",
            "keep.o": "kept",
            "build/out": "x",
            "secret.txt": "s",
            "sub/.gitignore": "local.txt\n!a.o\n",
            "sub/local.txt": "l",
            "sub/a.o": "negated below",
            "other/local.txt": "not ignored here",
            ".git/HEAD": "ref",
            ".o11n/admin-token": "token",
        },
    )
    tree, sources = trees.scan(tmp_path)
    assert sorted(tree) == [
        ".gitignore",
        ".o11nignore",
        "keep.o",
        "other/local.txt",
        "src/a.c",
        "sub/.gitignore",
        "sub/a.o",
    ]
    assert sources[digest_of(b"int a;")] == tmp_path / "src" / "a.c"


def test_scan_keeps_executable_bits_and_links(tmp_path: Path) -> None:
    write(tmp_path, {"run.sh": "#!/bin/sh\n", "data": "d"})
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "alias").symlink_to("data")
    tree, _ = trees.scan(tmp_path)
    assert tree["run.sh"].executable and not tree["data"].executable
    assert tree["alias"] == trees.Entry(link="data")


def test_a_tree_round_trips_and_equal_trees_have_equal_bytes(tmp_path: Path) -> None:
    write(tmp_path, {"b": "2", "a/c": "3"})
    tree, _ = trees.scan(tmp_path)
    data = trees.to_bytes(tree)
    assert trees.from_bytes(data) == tree
    assert trees.to_bytes(dict(reversed(list(tree.items())))) == data


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../up", "a/../../b", "a//b", "./a", "a/.", "nul\0byte"]
)
def test_a_tree_with_a_path_outside_itself_is_refused(path: str) -> None:
    entries = {path: {"digest": digest_of(b""), "size": 0}}
    data = ('{"format": "o11n-tree/1", "entries": ' + _json(entries) + "}").encode()
    with pytest.raises(BadRequest):
        trees.from_bytes(data)


@pytest.mark.parametrize("data", [b"", b"[]", b'{"format": "other"}', b"\xff", b'{"format":'])
def test_what_is_not_a_tree_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(BadRequest, match="not a valid tree"):
        trees.from_bytes(data)


def _json(value: object) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("src/**", ["src/a.c", "src/x/y.h"], ["srcs/a.c", "lib/src/a.c"]),
        ("*.c", ["a.c"], ["src/a.c", "a.h"]),
        ("**/*.c", ["a.c", "src/x/a.c"], ["a.h"]),
        ("build", ["build", "build/app", "build/x/y"], ["builds", "src/build"]),
        ("build/", ["build/app"], ["builder"]),
        ("a?.txt", ["ab.txt"], ["a/.txt", "abc.txt"]),
        ("Makefile", ["Makefile"], ["sub/Makefile"]),
    ],
)
def test_globs_match_paths_as_a_build_tool_would(
    pattern: str, yes: list[str], no: list[str]
) -> None:
    matches = trees.matcher([pattern])
    assert [p for p in yes if not matches(p)] == []
    assert [p for p in no if matches(p)] == []


def test_merge_lets_later_trees_win_and_select_picks_by_glob() -> None:
    a = {"x": trees.Entry(digest_of(b"1"), 1), "y": trees.Entry(digest_of(b"2"), 1)}
    b = {"y": trees.Entry(digest_of(b"3"), 1)}
    merged = trees.merge([a, b])
    assert merged["y"] == b["y"] and merged["x"] == a["x"]
    assert set(trees.select(merged, ["x"])) == {"x"}


def test_lay_out_writes_files_links_and_modes(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, {"bin/run": "#!/bin/sh\necho hi\n", "doc/readme": "r"})
    (src / "bin" / "run").chmod(0o755)
    (src / "readme").symlink_to("doc/readme")
    tree, sources = trees.scan(src)
    trees.lay_out(tree, dest, lambda d: sources[d])
    assert (dest / "doc" / "readme").read_text() == "r"
    assert os.access(dest / "bin" / "run", os.X_OK)
    assert os.readlink(dest / "readme") == "doc/readme"


def test_lay_out_refuses_to_write_through_a_link_out_of_the_folder(tmp_path: Path) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    cas = CasStore(tmp_path / "cas")
    evil = {
        "escape": trees.Entry(link=str(outside)),
        "escape/planted": trees.Entry(cas.put(b"gotcha"), 6),
    }
    with pytest.raises(BadRequest, match="leads out"):
        trees.lay_out(evil, dest, cas.path)
    assert list(outside.iterdir()) == []


def test_a_literal_pattern_matches_its_own_path_and_nothing_its_glob_would(
    tmp_path: Path,
) -> None:
    names = ["a*.txt", "ab.txt", "ac.txt", "x?", "xa", "[a]", "a", " sp", "sp", "d*/f", "dx/f"]
    write(tmp_path, {name: name for name in names})
    wanted = ["a*.txt", "x?", "[a]", " sp", "d*"]
    tree, _ = trees.scan(tmp_path, only=trees.matcher(trees.literal(p) for p in wanted))
    assert sorted(tree) == [" sp", "[a]", "a*.txt", "d*/f", "x?"]
    assert trees.matcher(["a*.txt"])("ab.txt")  # a pattern without the marker is a glob


def test_scan_keeps_only_the_empty_folders_it_is_asked_for(tmp_path: Path) -> None:
    write(tmp_path, {"full/f": "f"})
    for folder in ("out", "nested/empty", "other"):
        (tmp_path / folder).mkdir(parents=True)
    assert sorted(trees.scan(tmp_path)[0]) == ["full/f"]  # a workspace: files and links only
    wanted = trees.matcher(trees.literal(p) for p in ("out", "nested", "full"))
    tree, _ = trees.scan(tmp_path, ignore_files=False, only=wanted, folders=wanted)
    folder = trees.Entry(directory=True)
    assert tree == {"out": folder, "nested/empty": folder, "full/f": tree["full/f"]}


def test_folder_entries_are_stored_only_where_nothing_else_implies_them() -> None:
    file, folder = trees.Entry(digest_of(b"f"), 1), trees.Entry(directory=True)
    data = trees.to_bytes({"a": folder, "a/f": file, "a-b": folder, "e/mpty": folder})
    assert data == trees.to_bytes({"a/f": file, "a-b": folder, "e/mpty": folder})
    assert trees.from_bytes(data) == {"a/f": file, "a-b": folder, "e/mpty": folder}
    assert b'"a-b": {"dir": true}' in data


def test_a_tree_without_folders_is_stored_as_before_and_old_trees_load() -> None:
    stored = (
        b'{"entries": {"bin/run": {"digest": "' + digest_of(b"x").encode() + b'", '
        b'"executable": true, "size": 1}, "l": {"link": "bin"}}, "format": "o11n-tree/1"}'
    )
    tree = trees.from_bytes(stored)
    assert tree == {
        "bin/run": trees.Entry(digest_of(b"x"), 1, True),
        "l": trees.Entry(link="bin"),
    }
    assert trees.to_bytes(tree) == stored


def test_lay_out_makes_empty_folders(tmp_path: Path) -> None:
    cas = CasStore(tmp_path / "cas")
    folder = trees.Entry(directory=True)
    tree = {"empty": folder, "deep/er": folder, "f": trees.Entry(cas.put(b"f"), 1)}
    dest = tmp_path / "dest"
    trees.lay_out(tree, dest, cas.path)
    assert (dest / "empty").is_dir() and list((dest / "empty").iterdir()) == []
    assert (dest / "deep" / "er").is_dir() and (dest / "f").read_bytes() == b"f"


def test_lay_out_refuses_to_make_a_folder_through_a_link_out_of_the_folder(
    tmp_path: Path,
) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    evil = {
        "escape": trees.Entry(link=str(outside)),
        "escape/planted": trees.Entry(directory=True),
    }
    with pytest.raises(BadRequest, match="leads out"):
        trees.lay_out(evil, dest, CasStore(tmp_path / "cas").path)
    assert list(outside.iterdir()) == []


def test_lay_out_follows_the_tree_s_own_links_that_stay_inside(tmp_path: Path) -> None:
    dest, cas = tmp_path / "dest", CasStore(tmp_path / "cas")
    tree = {
        "real/kept": trees.Entry(cas.put(b"k"), 1),
        "rel": trees.Entry(link="real"),
        "rel/x": trees.Entry(cas.put(b"x"), 1),
        "abs": trees.Entry(link=str(dest / "real")),
        "abs/y": trees.Entry(cas.put(b"y"), 1),
    }
    trees.lay_out(tree, dest, cas.path)
    assert sorted(p.name for p in (dest / "real").iterdir()) == ["kept", "x", "y"]
    assert os.readlink(dest / "rel") == "real"


def test_lay_out_refuses_a_blob_that_is_not_its_digest(tmp_path: Path) -> None:
    """A changed copy of a blob is found as it is copied, and the copy is not left."""
    (tmp_path / "blob").write_bytes(b"changed")
    tree = {"a/run.sh": trees.Entry(digest_of(b"genuine"), 7, True)}
    with pytest.raises(BlobMismatch):
        trees.lay_out(tree, tmp_path / "dest", lambda d: tmp_path / "blob")
    assert list((tmp_path / "dest" / "a").iterdir()) == []


def test_scan_keeps_exactly_what_it_hashed(tmp_path: Path) -> None:
    """A small file's bytes are kept in memory, a large one is copied as it is hashed:
    neither is read from the folder again."""
    big = b"b" * (trees.SMALL_FILE + 1)
    write(tmp_path / "out", {"small": "first"})
    (tmp_path / "out" / "sub").mkdir()
    (tmp_path / "out" / "sub" / "big").write_bytes(big)
    stage = tmp_path / "stage"
    stage.mkdir()
    tree, sources = trees.scan(tmp_path / "out", copy_to=stage)
    (tmp_path / "out" / "small").write_text("changed afterwards")
    (tmp_path / "out" / "sub" / "big").write_text("changed afterwards")
    assert sources[digest_of(b"first")] == b"first"
    assert sources[digest_of(big)] == stage / digest_of(big)
    assert [(p.name, p.read_bytes()) for p in stage.iterdir()] == [(digest_of(big), big)]
    assert tree["sub/big"] == trees.Entry(digest_of(big), len(big))


def test_scan_beneath_reaches_its_root_through_no_link(tmp_path: Path) -> None:
    """A job's `workdir` swapped for a link out of the job's folder is not read."""
    job, outside = tmp_path / "job", tmp_path / "outside"
    write(outside, {"secret": "host only"})
    write(job, {"real/out": "artifact"})
    (job / "work").symlink_to(outside)
    assert sorted(trees.scan(job / "real", beneath=job)[0]) == ["out"]
    with pytest.raises(OSError):
        trees.scan(job / "work", beneath=job)


def test_lay_out_never_writes_through_a_folder_swapped_for_a_link(tmp_path: Path) -> None:
    """A job's leftover process keeps swapping a folder of the next tree being laid out
    for a link to a folder outside it: nothing is ever written outside (the lay-out may
    fail, or write into the folder the link took the place of: both stay inside)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    cas = CasStore(tmp_path / "cas")
    tree = {f"d/f{n}": trees.Entry(cas.put(b"planted %d" % n), 9) for n in range(300)}
    for attempt in range(20):
        dest = tmp_path / f"job{attempt}"
        (dest / "d").mkdir(parents=True)
        (dest / "link").symlink_to(outside)
        with swapping(dest / "d", dest / "link"), contextlib.suppress(BadRequest, OSError):
            trees.lay_out(tree, dest, cas.path)
        assert list(outside.iterdir()) == []


def test_scan_never_reads_a_file_swapped_for_a_link(tmp_path: Path) -> None:
    """The output race: a regular file the scan is about to read is swapped for a link to
    a host-only file, again and again; the tree never holds that file's content."""
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:host-only-hash:19000:0:99999:7:::\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.txt").write_bytes(b"the job's artifact")
    (out / "bait").symlink_to(secret)
    digests = set()
    with swapping(out / "result.txt", out / "bait"):
        for _ in range(3000):
            with contextlib.suppress(OSError):
                tree, _ = trees.scan(out, ignore_files=False, only=trees.matcher(["result.txt"]))
                digests.add(tree["result.txt"].digest)
    assert digest_of(secret.read_bytes()) not in digests
    assert digest_of(b"the job's artifact") in digests


def test_scan_never_walks_into_a_folder_swapped_for_a_link(tmp_path: Path) -> None:
    """The same with an output folder swapped for a link to a host folder: none of the
    host folder's files is ever taken."""
    host = tmp_path / "host"
    write(host, {"id_rsa": "host key"})
    out = tmp_path / "out"
    write(out, {"d/result.txt": "artifact"})
    (out / "bait").symlink_to(host)
    found: set[str] = set()
    with swapping(out / "d", out / "bait"):
        for _ in range(3000):
            with contextlib.suppress(OSError):
                found |= set(trees.scan(out, ignore_files=False)[0])
    assert "d/result.txt" in found
    assert not any(path.endswith("id_rsa") for path in found)


names = st.text(alphabet="abcxyz._-", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))


@given(st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join), st.binary()))
def test_any_set_of_files_round_trips_through_its_tree(files: dict[str, bytes]) -> None:
    tree = {path: trees.Entry(digest_of(data), len(data)) for path, data in files.items()}
    assert trees.from_bytes(trees.to_bytes(tree)) == tree


@given(
    st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join), st.binary()),
    st.sets(st.lists(names, min_size=1, max_size=3).map("/".join)),
)
def test_any_files_and_folders_round_trip_through_their_tree(
    files: dict[str, bytes], folders: set[str]
) -> None:
    tree = {path: trees.Entry(directory=True) for path in folders}
    tree.update({path: trees.Entry(digest_of(data), len(data)) for path, data in files.items()})
    again = trees.from_bytes(trees.to_bytes(tree))
    assert again == trees.without_implied_folders(tree)
    assert trees.to_bytes(again) == trees.to_bytes(tree)
    assert all(
        not e.directory or not any(p.startswith(k + "/") for p in again) for k, e in again.items()
    )
