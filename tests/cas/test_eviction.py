"""A capped blob store drops least recently used blobs, never one that is pinned or kept."""

from __future__ import annotations

import itertools
import logging
import random
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from o11n.cas.eviction import RETRY_SECONDS, LruIndex
from o11n.cas.store import CasStore, digest_of, scan_blobs
from o11n.errors import NotFound
from tests.clock import Clock

HUNDRED = 100  # every blob in these tests but the concurrent one is 100 bytes


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


@pytest.fixture
def capped(tmp_path: Path, clock: Clock) -> Callable[[int], CasStore]:
    def make(cap_bytes: int) -> CasStore:
        return CasStore(tmp_path / "cas", cap_bytes=cap_bytes, clock=clock)

    return make


def blob(name: str) -> bytes:
    return name.encode().ljust(HUNDRED, b".")


def stored(cas: CasStore, *names: str) -> set[str]:
    """Which of these named blobs are still on disk."""
    return {name for name in names if cas.path(digest_of(blob(name))).is_file()}


def put_all(cas: CasStore, *names: str) -> list[str]:
    return [cas.put(blob(name)) for name in names]


def test_a_blob_read_recently_survives_and_the_least_recently_used_goes(
    capped: Callable[[int], CasStore],
) -> None:
    cas = capped(350)
    a, _b, _c = put_all(cas, "a", "b", "c")
    assert cas.read(a) == blob("a")
    cas.put(blob("d"))  # 400 bytes > 350: down to 315 at most, which takes one blob
    assert stored(cas, "a", "b", "c", "d") == {"a", "c", "d"}
    stats = cas.stats()
    assert (stats.count, stats.bytes, stats.evicted_total, stats.evicted_bytes_total) == (
        3,
        300,
        1,
        100,
    )


def test_has_missing_and_touch_are_uses(capped: Callable[[int], CasStore]) -> None:
    cas = capped(550)
    a, b, c, _d, _e = put_all(cas, "a", "b", "c", "d", "e")
    assert cas.has(a) and cas.touch(b)
    assert cas.missing([c, digest_of(b"absent")]) == [digest_of(b"absent")]
    put_all(cas, "f", "g")  # f: 600 > 550, down to 495: the two least recently used go
    assert stored(cas, "a", "b", "c", "d", "e", "f", "g") == {"a", "b", "c", "f", "g"}


def test_the_total_stays_at_or_below_the_cap_after_every_write(
    capped: Callable[[int], CasStore],
) -> None:
    cas = capped(1000)
    for i in range(30):
        cas.put(blob(f"blob {i}"))
        assert cas.stats().bytes <= 1000
    on_disk = list(scan_blobs(cas.root))
    assert cas.stats().bytes == sum(size for _, size, _ in on_disk) <= 1000
    assert cas.stats().evicted_total == 30 - len(on_disk)
    assert stored(cas, "blob 29", "blob 0") == {"blob 29"}


def test_without_a_cap_nothing_is_evicted(tmp_path: Path) -> None:
    cas = CasStore(tmp_path / "cas")
    for i in range(50):
        cas.put(blob(f"blob {i}"))
    assert cas.evict() == 0
    assert cas.stats().count == 50 and cas.stats().cap is None


def test_a_pinned_blob_survives_and_goes_after_release(capped: Callable[[int], CasStore]) -> None:
    cas = capped(350)
    a, _b, _c = put_all(cas, "a", "b", "c")
    with cas.pin([a]) as pin:
        put_all(cas, "d", "e")
        assert stored(cas, "a", "b", "c") == {"a"}
    assert pin.released and cas.stats().pinned == 0
    cas.put(blob("f"))
    assert stored(cas, "a", "d", "e", "f") == {"e", "f", "d"}


def test_pins_are_counted(capped: Callable[[int], CasStore]) -> None:
    cas = capped(250)
    (a,) = put_all(cas, "a")
    first, second = cas.pin([a]), cas.pin([a, a])
    first.release()
    first.release()  # a second release of one pin does not undo the other pin
    put_all(cas, "b", "c")
    assert "a" in stored(cas, "a")
    second.release()
    cas.put(blob("d"))
    assert stored(cas, "a", "b", "c", "d") == {"c", "d"}


def test_a_blob_may_be_pinned_before_it_is_written(capped: Callable[[int], CasStore]) -> None:
    cas = capped(250)
    with cas.pin([digest_of(blob("input"))]):
        put_all(cas, "input", "b", "c", "d")
        assert "input" in stored(cas, "input")


def test_what_keepers_need_is_never_evicted(capped: Callable[[int], CasStore]) -> None:
    cas = capped(250)
    needed: set[str] = set()
    cas.add_keeper(lambda: needed)
    a, _b = put_all(cas, "a", "b")
    needed.add(a)  # asked at eviction time, not when the keeper was added
    put_all(cas, "c", "d")
    assert stored(cas, "a", "b", "c", "d") == {"a", "d"}


def test_a_blob_used_or_pinned_while_a_pass_runs_survives_it(
    capped: Callable[[int], CasStore],
) -> None:
    cas = capped(250)
    a, b = put_all(cas, "a", "b")
    held: list[object] = []

    def keeper() -> Iterable[str]:
        # The pass has begun (it asks its keepers first): a client finds `a`
        # present and an action pins `b`, both the least recently used.
        assert cas.has(a)
        held.append(cas.pin([b]))
        return []

    cas.add_keeper(keeper)
    cas.put(blob("c"))  # 300 > 250
    assert stored(cas, "a", "b", "c") == {"a", "b", "c"}
    assert cas.stats().shortfalls_total == 1


def test_when_everything_left_is_needed_the_store_stays_over_its_cap(
    capped: Callable[[int], CasStore], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cas = capped(250)
    asked: list[float] = []

    def keeper() -> Iterable[str]:
        asked.append(clock.now)
        return [digest_of(blob("a"))]

    cas.add_keeper(keeper)
    a, b = put_all(cas, "a", "b")
    with caplog.at_level(logging.WARNING), cas.pin([b]):
        c = cas.put(blob("c"))  # the blob just written is not evicted for its own write
        assert cas.stats().bytes == 300 and cas.stats().shortfalls_total == 1
        assert "over its cap of 250" in caplog.text
        d = cas.put(blob("d"))  # no second pass (nor keeper call) until the retry time
        assert len(asked) == 1 and cas.stats().bytes == 400
    assert [cas.read(x) for x in (a, b, c, d)] == [blob(n) for n in "abcd"]
    clock.now += RETRY_SECONDS
    cas.put(blob("e"))  # b released: b, c, d go, oldest first, until at most 225 bytes
    assert stored(cas, "a", "b", "c", "d", "e") == {"a", "e"} and len(asked) == 2


def test_a_failing_keeper_stops_eviction_but_not_the_write(
    capped: Callable[[int], CasStore], caplog: pytest.LogCaptureFixture
) -> None:
    cas = capped(150)

    def broken() -> Iterable[str]:
        raise RuntimeError("database gone")

    cas.add_keeper(broken)
    with caplog.at_level(logging.ERROR):
        put_all(cas, "a", "b")
    assert stored(cas, "a", "b") == {"a", "b"}
    assert "keeper failed" in caplog.text and cas.stats().shortfalls_total == 1


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Threads switch every microsecond or so: races show up instead of hiding."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_many_threads_writing_reading_and_pinning_while_eviction_runs(tmp_path: Path) -> None:
    ticks = itertools.count(1_700_000_000)
    cas = CasStore(tmp_path / "cas", cap_bytes=64 * 1024, clock=lambda: float(next(ticks)))
    kept = {cas.put(f"kept {i}".encode() * 50) for i in range(5)}
    cas.add_keeper(lambda: kept)
    # 200 blobs of 0.2-6 KB, about 600 KB in all: written over and over by several
    # threads at once, and read (written yet or not) while passes evict them.
    contents = [f"blob {i} ".encode() * random.Random(i).randint(30, 800) for i in range(200)]
    by_digest = {digest_of(data): data for data in contents}
    digests = list(by_digest)
    stop = threading.Event()

    def writer(w: int) -> None:
        rng = random.Random(w)
        for _ in range(400):
            cas.put(rng.choice(contents))

    def reader(r: int) -> int:
        rng, reads = random.Random(r), 0
        while not stop.is_set():
            digest = rng.choice(digests)
            try:
                assert cas.read(digest) == by_digest[digest]  # never a partial blob
                reads += 1
            except NotFound:
                pass
            cas.missing(rng.sample(digests, 5))
        return reads

    def pinner(p: int) -> None:
        rng = random.Random(100 + p)
        for _ in range(150):
            digest = rng.choice(digests)
            with cas.pin([digest]):  # pinned, then written: never evicted until released
                cas.put(by_digest[digest])
                for _ in range(3):
                    assert cas.read(digest) == by_digest[digest]
            digest = rng.choice(digests)
            with cas.pin([digest]):  # pinned while a pass may be choosing it
                if cas.has(digest):
                    assert cas.read(digest) == by_digest[digest]

    with ThreadPoolExecutor(max_workers=11) as pool:
        readers = [pool.submit(reader, r) for r in range(4)]
        try:
            work = [pool.submit(writer, w) for w in range(4)]
            work += [pool.submit(pinner, p) for p in range(3)]
            for done in work:
                done.result()
        finally:
            stop.set()
        assert sum(r.result() for r in readers) > 0

    stats = cas.stats()
    # How much goes depends on the interleaving: a blob read or found present while a
    # pass runs is not evicted by it, and these readers touch every blob all the time.
    assert stats.evicted_total > 0 and stats.pinned == 0
    on_disk = list(scan_blobs(cas.root))
    assert (stats.count, stats.bytes) == (len(on_disk), sum(size for _, size, _ in on_disk))
    assert kept <= {digest for digest, _, _ in on_disk}
    assert list((cas.root / "tmp").iterdir()) == []
    cas.evict()
    assert cas.stats().bytes <= 64 * 1024


def test_the_index_orders_by_use_and_holds_pins_until_each_is_undone() -> None:
    index = LruIndex()
    index.load([("b", 2, 20.0), ("a", 1, 10.0), ("c", 3, 30.0)])
    assert index.oldest_first() == ["a", "b", "c"] and index.total == 6
    index.use("a")
    index.add("b", 2, 40.0)  # stored again: no bytes counted twice
    assert index.oldest_first() == ["c", "a", "b"] and index.total == 6
    index.pin(["c"])
    index.pin(["c"])
    index.unpin(["c"])
    assert index.evictable("c", bound=index.seq + 1) is None
    index.unpin(["c"])
    assert index.evictable("c", bound=index.seq + 1) is not None
    assert index.evictable("b", bound=index.seq) is None  # used at or after the bound
