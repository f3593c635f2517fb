"""The worker's blob cache against a real scheduler's store: trees laid out whole, the
cache held under its cap by dropping the least recently used blobs, and kept across a
restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from o11n.cas import tree as trees
from o11n.cas.store import digest_of
from o11n.core.jobs import JobSpec
from o11n.errors import BadRequest
from o11n.worker.api import WorkerApi
from o11n.worker.executor import Attempt, Executor
from o11n.worker.files import Files
from tests.races import swapping
from tests.servers import ServerProcess

SIZE = 1000


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[WorkerApi]:
    made = WorkerApi(server.url, server.token)
    yield made
    await made.close()


async def stored_tree(api: WorkerApi, files: dict[str, bytes]) -> str:
    """Put the files and their tree in the scheduler's store; the tree's digest."""
    tree: trees.Tree = {}
    for path, data in files.items():
        await api.put_blob(digest_of(data), data)
        tree[path] = trees.Entry(digest_of(data), len(data))
    listing = trees.to_bytes(tree)
    await api.put_blob(digest_of(listing), listing)
    return digest_of(listing)


def content(n: int) -> bytes:
    return bytes([n]) * SIZE


async def test_the_cache_stays_under_its_cap_dropping_the_least_recently_used(
    api: WorkerApi, tmp_path: Path
) -> None:
    files = Files(api, tmp_path / "cache", cap_bytes=3 * SIZE)
    made = [await stored_tree(api, {f"f{n}.bin": content(n)}) for n in range(6)]
    for n, digest in enumerate(made):
        await files.lay_out(digest, tmp_path / f"job{n}")
        assert (tmp_path / f"job{n}" / f"f{n}.bin").read_bytes() == content(n)
        assert files.cached_bytes <= 3 * SIZE
    assert files.blob(digest_of(content(5))).exists()  # the latest stays
    assert not files.blob(digest_of(content(0))).exists()  # the oldest went first
    # a dropped blob is fetched again when it is needed again
    await files.lay_out(made[0], tmp_path / "again")
    assert (tmp_path / "again" / "f0.bin").read_bytes() == content(0)


async def test_a_tree_larger_than_the_cap_is_laid_out_whole(api: WorkerApi, tmp_path: Path) -> None:
    """Its blobs are held while it is laid out; only afterwards does the cache shrink."""
    files = Files(api, tmp_path / "cache", cap_bytes=2 * SIZE)
    big = {f"d/f{n}.bin": content(n) for n in range(8)}
    await files.lay_out(await stored_tree(api, big), tmp_path / "job")
    for path, data in big.items():
        assert (tmp_path / "job" / path).read_bytes() == data
    assert files.cached_bytes <= 2 * SIZE


async def test_the_cache_is_kept_across_a_restart(api: WorkerApi, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    digest = await stored_tree(api, {"a.bin": content(1), "b.bin": content(2)})
    first = Files(api, cache)
    await first.lay_out(digest, tmp_path / "one")
    blob = first.blob(digest_of(content(1)))
    inode = blob.stat().st_ino
    (cache / "x.part").write_bytes(b"partial")  # an interrupted download is not a blob

    again = Files(api, cache)
    assert again.cached_bytes == first.cached_bytes > 2 * SIZE  # the files and the tree
    await again.lay_out(digest, tmp_path / "two")
    assert blob.stat().st_ino == inode  # used from the cache, not downloaded again
    assert (tmp_path / "two" / "b.bin").read_bytes() == content(2)


async def test_trees_laid_out_at_once_keep_each_other_s_blobs(
    api: WorkerApi, tmp_path: Path
) -> None:
    """One lay-out ending shrinks the cache while others are still copying: the blobs
    they hold are not dropped under them."""
    files = Files(api, tmp_path / "cache", cap_bytes=SIZE)
    made = [
        await stored_tree(api, {f"f{k}.bin": content(10 * n + k) for k in range(10)})
        for n in range(6)
    ]
    await asyncio.gather(*(files.lay_out(d, tmp_path / f"job{n}") for n, d in enumerate(made)))
    for n in range(6):
        for k in range(10):
            assert (tmp_path / f"job{n}" / f"f{k}.bin").read_bytes() == content(10 * n + k)
    assert files.cached_bytes <= SIZE


@pytest.mark.parametrize("how", ["rewritten", "replaced by a link"])
async def test_a_cached_blob_changed_on_disk_is_never_laid_out(
    api: WorkerApi, tmp_path: Path, how: str
) -> None:
    """A job that could write the cache rewrote the cached blob of another tenant's build
    script: the next lay-out notices and fetches the blob again."""
    script, evil = b"#!/bin/sh\necho built by A\n", b"#!/bin/sh\necho owned by B\n"
    digest = await stored_tree(api, {"build.sh": script})
    files = Files(api, tmp_path / "cache")
    await files.lay_out(digest, tmp_path / "one")
    cached = files.blob(digest_of(script))
    if how == "rewritten":
        cached.write_bytes(evil)
    else:
        (tmp_path / "evil").write_bytes(evil)
        cached.unlink()
        cached.symlink_to(tmp_path / "evil")
    await files.lay_out(digest, tmp_path / "two")
    assert (tmp_path / "two" / "build.sh").read_bytes() == script
    assert files.blob(digest_of(script)).read_bytes() == script


async def test_a_cached_tree_changed_on_disk_is_never_laid_out(
    api: WorkerApi, tmp_path: Path
) -> None:
    """The same with the tree's own blob: a rewritten listing names other files."""
    digest = await stored_tree(api, {"build.sh": b"#!/bin/sh\necho built by A\n"})
    files = Files(api, tmp_path / "cache")
    await files.lay_out(digest, tmp_path / "one")
    evil = await stored_tree(api, {"pwned.sh": b"#!/bin/sh\necho owned by B\n"})
    await files.lay_out(evil, tmp_path / "evil")
    files.blob(digest).write_bytes(files.blob(evil).read_bytes())
    await files.lay_out(digest, tmp_path / "two")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["build.sh"]


async def test_an_output_swapped_for_a_link_never_uploads_what_it_points_to(
    api: WorkerApi, tmp_path: Path
) -> None:
    """A job's leftover process keeps swapping its artifact for a link to a host-only
    file while the worker stores the outputs: no stored blob holds that file."""
    secret = b"root:host-only-hash:19000:0:99999:7:::\n"
    (tmp_path / "shadow").write_bytes(secret)
    cwd = tmp_path / "job"
    cwd.mkdir()
    (cwd / "result.txt").write_bytes(b"the job's artifact")
    (cwd / "bait").symlink_to(tmp_path / "shadow")
    files = Files(api, tmp_path / "cache")
    stored = set()
    with swapping(cwd / "result.txt", cwd / "bait"):
        for _ in range(300):
            with contextlib.suppress(BadRequest, OSError):
                stored.add(await files.store(cwd, ["result.txt"]))
    blobs = set()
    for digest in stored:
        await api.get_blob(digest, tmp_path / "tree")
        tree = trees.from_bytes((tmp_path / "tree").read_bytes())
        blobs |= {e.digest for e in tree.values() if e.digest}
    assert digest_of(b"the job's artifact") in blobs
    for digest in blobs:
        await api.get_blob(digest, tmp_path / "blob")
        assert (tmp_path / "blob").read_bytes() != secret


async def test_a_workdir_swapped_for_a_link_is_not_where_outputs_are_read(
    api: WorkerApi, tmp_path: Path
) -> None:
    """The job replaces its own `workdir` with a link to a host folder: its outputs are
    not read through that link."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "result.txt").write_bytes(b"host only")
    executor = Executor(tmp_path / "work", files=Files(api, tmp_path / "cache"))
    command = f"cd .. && rm -r build && ln -s {tmp_path / 'host'} build"
    spec = JobSpec.model_validate(
        {"command": command, "workdir": "build", "outputs": ["result.txt"]}
    )
    ended = await executor.run(Attempt(1, 1, "w1", spec), Output(), asyncio.Event(), print)
    assert ended.kind == "error" and ended.outputs is None
    assert "cannot store outputs" in (ended.reason or "")


class Output:
    async def write(self, stream: str, data: bytes) -> None:
        pass
