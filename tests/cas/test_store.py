"""The blob store: content named by its SHA-256, verified on the way in, stored once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
