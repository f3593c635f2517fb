"""REAPI digests (SHA-256 hash and size) and ByteStream resource names, checked."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from o11n.errors import BadRequest
from o11n.reapi.protos import re_pb2

HASH = re.compile(r"^[0-9a-f]{64}$")
EMPTY_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MAX_INSTANCE_NAME = 255


@dataclass(frozen=True, slots=True)
class BlobName:
    """What a ByteStream resource name names: an instance's blob, and for writes the upload."""

    instance: str
    hash: str
    size: int
    upload: str | None = None


def checked(digest: re_pb2.Digest, what: str = "digest") -> re_pb2.Digest:
    """The digest, or BadRequest when it is not a SHA-256 digest with a size."""
    if not HASH.match(digest.hash):
        raise BadRequest(f"{what} {digest.hash[:80]!r} is not a SHA-256 hash (64 hex digits)")
    if digest.size_bytes < 0:
        raise BadRequest(f"{what} {digest.hash} has a negative size")
    return digest


def text(digest: re_pb2.Digest) -> str:
    """`hash/size`, as logs, labels and errors show a digest."""
    return f"{digest.hash}/{digest.size_bytes}"


def of(data: bytes) -> re_pb2.Digest:
    """The digest of some bytes."""
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def check_instance(name: str) -> str:
    """An instance name: any, up to 255 characters, without the words that resource names
    use as separators (`blobs`, `uploads`, `operations`) as path segments."""
    if len(name) > MAX_INSTANCE_NAME:
        raise BadRequest(f"an instance name may hold at most {MAX_INSTANCE_NAME} characters")
    if {"blobs", "uploads", "compressed-blobs", "operations"} & set(name.split("/")):
        raise BadRequest(f"instance name {name[:80]!r} has a reserved segment")
    return name


def parse_read(name: str) -> BlobName:
    """`{instance}/blobs/{hash}/{size}`, the resource name of a ByteStream Read."""
    parts = name.split("/")
    for i, part in enumerate(parts):
        if part == "blobs" and len(parts) == i + 3:
            return _blob("/".join(parts[:i]), parts[i + 1], parts[i + 2], None)
        if part == "compressed-blobs":
            raise BadRequest("compressed blobs are not supported (no compressors advertised)")
    raise BadRequest(f"{name[:200]!r} is not a resource name {{instance}}/blobs/{{hash}}/{{size}}")


def parse_write(name: str) -> BlobName:
    """`{instance}/uploads/{uuid}/blobs/{hash}/{size}[/{anything}]`, a ByteStream Write's."""
    parts = name.split("/")
    for i, part in enumerate(parts):
        if part == "uploads" and len(parts) >= i + 5 and parts[i + 2] == "blobs":
            if not parts[i + 1]:
                break
            return _blob("/".join(parts[:i]), parts[i + 3], parts[i + 4], parts[i + 1])
        if part == "compressed-blobs":
            raise BadRequest("compressed blobs are not supported (no compressors advertised)")
    raise BadRequest(
        f"{name[:200]!r} is not a resource name "
        "{instance}/uploads/{uuid}/blobs/{hash}/{size}"
    )


def _blob(instance: str, hash_: str, size: str, upload: str | None) -> BlobName:
    if not HASH.match(hash_):
        raise BadRequest(f"{hash_[:80]!r} in the resource name is not a SHA-256 hash")
    if not size.isdigit() or len(size) > 19:
        raise BadRequest(f"{size[:40]!r} in the resource name is not a size")
    return BlobName(check_instance(instance), hash_, int(size), upload)
