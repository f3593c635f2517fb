"""The blob store: content named by its SHA-256, verified on the way in, stored once."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from o11n.cas.eviction import MTIME_RESOLUTION
from o11n.cas.store import CasStore, check_digest, digest_of
from o11n.errors import BadRequest, NotFound


@pytest.fixture
def cas(tmp_path: Path) -> CasStore:
    return CasStore(tmp_path / "cas", max_blob_bytes=1024)


def test_a_blob_is_stored_under_its_sha256_and_read_back(cas: CasStore) -> None:
    digest = cas.put(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert cas.read(digest) == b"hello" and cas.has(digest)
    assert cas.path(digest).parent.name == digest[:2]


def test_storing_the_same_content_twice_keeps_one_blob(cas: CasStore) -> None:
    assert cas.put(b"same") == cas.put(b"same")
    blobs = [p for p in cas.root.rglob("*") if p.is_file()]
    assert len(blobs) == 1


def test_missing_lists_each_absent_digest_once_in_order(cas: CasStore) -> None:
    here = cas.put(b"here")
    absent = [digest_of(b"a"), digest_of(b"b")]
    assert cas.missing([absent[1], here, absent[0], absent[1]]) == [absent[1], absent[0]]


def test_content_that_does_not_match_its_digest_is_refused_and_not_kept(cas: CasStore) -> None:
    with pytest.raises(BadRequest, match="SHA-256 is"), cas.writer() as blob:
        blob.write(b"one thing")
        blob.commit(digest_of(b"another"))
    assert not cas.has(digest_of(b"one thing"))
    assert list((cas.root / "tmp").iterdir()) == []


def test_a_blob_over_the_size_limit_is_refused_and_not_kept(cas: CasStore) -> None:
    with pytest.raises(BadRequest, match="at most 1024 bytes"), cas.writer() as blob:
        blob.write(b"x" * 1000)
        blob.write(b"x" * 25)
    assert list((cas.root / "tmp").iterdir()) == []


def test_unknown_blobs_and_bad_digests_are_clear_errors(cas: CasStore) -> None:
    with pytest.raises(NotFound):
        cas.read(digest_of(b"never stored"))
    for bad in ["", "abc", "A" * 64, "../" + "0" * 61, "g" * 64]:
        with pytest.raises(BadRequest):
            check_digest(bad)
        with pytest.raises(BadRequest):
            cas.path(bad)


@given(st.binary(max_size=2048))
def test_any_content_round_trips_or_is_refused_for_size(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cas = CasStore(Path(tmp), max_blob_bytes=1024)
        if len(data) > 1024:
            with pytest.raises(BadRequest):
                cas.put(data)
        else:
            assert cas.read(cas.put(data)) == data


def test_storing_a_blob_again_counts_its_bytes_once(cas: CasStore) -> None:
    cas.put(b"x" * 10)
    cas.put(b"x" * 10)
    cas.put(b"y" * 5)
    assert (cas.stats().count, cas.stats().bytes) == (2, 15)


def test_a_blob_removed_behind_the_stores_back_reads_as_not_found(cas: CasStore) -> None:
    digest = cas.put(b"doomed")
    cas.path(digest).unlink()
    with pytest.raises(NotFound):
        cas.read(digest)
    assert not cas.has(digest) and cas.stats().count == 0


def test_a_restarted_store_finds_its_blobs_sizes_and_their_use_order_by_mtime(
    tmp_path: Path,
) -> None:
    first = CasStore(tmp_path / "cas")
    digests = sorted(first.put(bytes([i]) * 100) for i in range(4))
    for age, digest in enumerate(digests):  # mtimes in the reverse order of the digests
        os.utime(first.path(digest), (5000.0 - age, 5000.0 - age))
    (first.root / "tmp" / "unfinished").write_bytes(b"x" * 1000)
    (first.root / digests[0][:2] / "not-a-blob").write_bytes(b"x" * 1000)

    again = CasStore(tmp_path / "cas", cap_bytes=450, clock=lambda: 6000.0)
    assert (again.stats().count, again.stats().bytes) == (4, 400)
    again.put(b"new" * 50)  # 550 > 450: down to 405 at most, the two oldest mtimes go
    assert [again.has(d) for d in digests] == [True, True, False, False]


def test_a_use_moves_the_files_mtime_at_most_once_per_resolution(tmp_path: Path) -> None:
    now = [2_000_000_000.0]
    cas = CasStore(tmp_path / "cas", clock=lambda: now[0])
    digest = cas.put(b"used")
    written = cas.path(digest).stat().st_mtime
    now[0] += MTIME_RESOLUTION - 1
    assert cas.read(digest) == b"used" and cas.has(digest)
    assert cas.path(digest).stat().st_mtime == written  # no metadata write per use
    now[0] += 1
    assert cas.missing([digest]) == []
    assert cas.path(digest).stat().st_mtime == now[0]
    used_at = now[0]
    now[0] += 10
    cas.read(digest)
    assert cas.path(digest).stat().st_mtime == used_at
