"""The worker's blob cache against a real scheduler's store: trees laid out whole, the
cache held under its cap by dropping the least recently used blobs, and kept across a
restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from o11n.cas import tree as trees
from o11n.cas.store import digest_of
from o11n.worker.api import WorkerApi
from o11n.worker.files import Files
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
