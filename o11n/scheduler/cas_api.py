"""HTTP routes of the content-addressed store: which blobs are missing, put one, get one.

Any token may read and write blobs: a blob is named by the hash of its content,
so only someone who knows the content (or was given its digest) can ask for it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse

from o11n.cas.store import CasStore
from o11n.errors import NotFound
from o11n.scheduler.app import Caller
from o11n.scheduler.schemas import BlobOut, DigestsIn, MissingOut

router = APIRouter(tags=["cas"])
DigestPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="A blob's SHA-256.")]
FLUSH_BYTES = 1024 * 1024


def cas_of(request: Request) -> CasStore:
    cas: CasStore = request.app.state.cas
    return cas


@router.post("/api/v1/cas/missing")
async def missing(body: DigestsIn, request: Request, _who: Caller) -> MissingOut:
    """Which of these blobs the store lacks (upload those, and only those)."""
    cas = cas_of(request)
    return MissingOut(missing=await asyncio.to_thread(cas.missing, body.digests))


@router.put("/api/v1/cas/blobs/{digest}", status_code=201)
async def put_blob(
    digest: DigestPath, request: Request, response: Response, _who: Caller
) -> BlobOut:
    """Store a blob; its content must hash to `digest` (400 otherwise, and nothing kept)."""
    cas = cas_of(request)
    if await asyncio.to_thread(cas.has, digest):
        response.status_code = 200
        return BlobOut(digest=digest, size=cas.path(digest).stat().st_size, stored=False)
    with cas.writer() as blob:
        pending: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            size += len(chunk)
            if size >= FLUSH_BYTES:
                await asyncio.to_thread(blob.write, b"".join(pending))
                pending, size = [], 0
        await asyncio.to_thread(blob.write, b"".join(pending))
        await asyncio.to_thread(blob.commit, digest)
    return BlobOut(digest=digest, size=blob.size, stored=True)


@router.get("/api/v1/cas/blobs/{digest}", response_class=FileResponse)
async def get_blob(digest: DigestPath, request: Request, _who: Caller) -> FileResponse:
    """A blob's content."""
    cas = cas_of(request)
    cas.touch(digest)  # a use: eviction keeps recently read blobs
    path = cas.path(digest)
    if not await asyncio.to_thread(path.is_file):
        raise NotFound(f"no blob {digest}")
    return FileResponse(path, media_type="application/octet-stream")
