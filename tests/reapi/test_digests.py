"""Resource names and digests as the REAPI spells them."""

from __future__ import annotations

import pytest

from o11n.errors import BadRequest
from o11n.reapi import digests
from o11n.reapi.protos import re_pb2

H = "a" * 64


def test_read_names_carry_any_instance() -> None:
    assert digests.parse_read(f"blobs/{H}/12") == digests.BlobName("", H, 12)
    assert digests.parse_read(f"main/x/blobs/{H}/0") == digests.BlobName("main/x", H, 0)


def test_write_names_carry_the_upload_and_may_end_in_anything() -> None:
    name = f"ci/uploads/u-1/blobs/{H}/5/some/file.txt"
    assert digests.parse_write(name) == digests.BlobName("ci", H, 5, "u-1")
    assert digests.parse_write(f"uploads/u/blobs/{H}/5").instance == ""


@pytest.mark.parametrize(
    "name",
    [
        "",
        f"blobs/{H}",
        f"blobs/{H[:-1]}/1",
        f"blobs/{H.upper()}/1",
        f"blobs/{H}/-1",
        f"blobs/{H}/1/extra",
        f"x/compressed-blobs/zstd/{H}/1",
        f"uploads/u/blobs/{H}/1",
    ],
)
def test_malformed_read_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest):
        digests.parse_read(name)


@pytest.mark.parametrize(
    "name", [f"blobs/{H}/1", f"uploads//blobs/{H}/1", f"uploads/u/blobs/{H}/x", "uploads/u"]
)
def test_malformed_write_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest):
        digests.parse_write(name)


def test_digests_are_checked() -> None:
    assert digests.checked(re_pb2.Digest(hash=H, size_bytes=3)).size_bytes == 3
    with pytest.raises(BadRequest, match="SHA-256"):
        digests.checked(re_pb2.Digest(hash="abc", size_bytes=3))
    with pytest.raises(BadRequest, match="negative"):
        digests.checked(re_pb2.Digest(hash=H, size_bytes=-1))


def test_instance_names_may_not_use_reserved_segments() -> None:
    assert digests.check_instance("team/a") == "team/a"
    for bad in ("a/blobs", "uploads", "x" * 256):
        with pytest.raises(BadRequest):
            digests.check_instance(bad)


def test_the_empty_digest_is_the_sha256_of_nothing() -> None:
    assert digests.of(b"").hash == digests.EMPTY_HASH
