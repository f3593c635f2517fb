"""The gRPC servicers: each parses its request, calls the REAPI parts, and maps errors
(o11n.reapi.status) to status codes. Nothing else happens here."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias, TypeVar, cast

import grpc
from google.protobuf import empty_pb2

from o11n.errors import BadRequest, NotFound, O11nError, OutOfRange, Unimplemented
from o11n.reapi import digests
from o11n.reapi.blobs import Blobs
from o11n.reapi.cache import ActionCache
from o11n.reapi.directories import walk
from o11n.reapi.execution import Executions
from o11n.reapi.protos import (
    bs_grpc,
    bs_pb2,
    ops_grpc,
    ops_pb2,
    re_grpc,
    re_pb2,
    semver_pb2,
)
from o11n.reapi.status import code_of, number
from o11n.reapi.uploads import Uploads
from o11n.scheduler.auth import Principal
from o11n.scheduler.service import Scheduler

MAX_BATCH_BYTES = 4 * 1024 * 1024 - 64 * 1024  # a batch's blobs, below gRPC's 4 MiB message
READ_CHUNK = 1024 * 1024
GRPC_MESSAGE_BYTES = 16 * 1024 * 1024  # what the server accepts; batches are held to the above
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
F = TypeVar("F", bound=Callable[..., Any])


def unary(method: F) -> F:
    """A unary method whose o11n errors become gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Ctx) -> Any:
        try:
            return await method(self, request, context)
        except O11nError as exc:
            await context.abort(code_of(exc), exc.message)

    return cast(F, wrapper)


def streaming(method: F) -> F:
    """A server-streaming method whose o11n errors become gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Ctx) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except O11nError as exc:
            await context.abort(code_of(exc), exc.message)

    return cast(F, wrapper)


class Callers:
    """Who calls: a bearer token in the `authorization` metadata names a tenant (or the
    admin); a call without one runs as the REAPI port's tenant."""

    def __init__(self, sched: Scheduler, tenant: str) -> None:
        self.sched, self.tenant = sched, tenant

    def of(self, context: Ctx) -> Principal:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                token = value.removeprefix("Bearer ").strip()
                return self.sched.tokens.authenticate(token)
        return Principal("tenant", self.tenant)


class Capabilities(re_grpc.CapabilitiesServicer):
    """What this server does: SHA-256, batches up to MAX_BATCH_BYTES, execution."""

    @unary
    async def GetCapabilities(
        self, request: re_pb2.GetCapabilitiesRequest, context: Ctx
    ) -> re_pb2.ServerCapabilities:
        digests.check_instance(request.instance_name)
        sha256 = re_pb2.DigestFunction.SHA256
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(
                digest_function=[sha256],
                action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(
                    update_enabled=True
                ),
                max_batch_total_size_bytes=MAX_BATCH_BYTES,
                symlink_absolute_path_strategy=re_pb2.SymlinkAbsolutePathStrategy.ALLOWED,
            ),
            execution_capabilities=re_pb2.ExecutionCapabilities(
                digest_function=sha256, exec_enabled=True
            ),
            low_api_version=semver_pb2.SemVer(major=2),
            high_api_version=semver_pb2.SemVer(major=2, minor=2),
        )


class ContentAddressableStorage(re_grpc.ContentAddressableStorageServicer):
    """FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, GetTree."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    @unary
    async def FindMissingBlobs(
        self, request: re_pb2.FindMissingBlobsRequest, context: Ctx
    ) -> re_pb2.FindMissingBlobsResponse:
        digests.check_instance(request.instance_name)
        wanted = [digests.checked(d) for d in request.blob_digests]
        return re_pb2.FindMissingBlobsResponse(
            missing_blob_digests=await self.blobs.missing(wanted)
        )

    @unary
    async def BatchUpdateBlobs(
        self, request: re_pb2.BatchUpdateBlobsRequest, context: Ctx
    ) -> re_pb2.BatchUpdateBlobsResponse:
        digests.check_instance(request.instance_name)
        _within_batch(sum(len(r.data) for r in request.requests))
        answer = re_pb2.BatchUpdateBlobsResponse()
        for item in request.requests:
            one = answer.responses.add(digest=item.digest)
            try:
                await self.blobs.put(item.data, digests.checked(item.digest))
            except O11nError as exc:
                one.status.code, one.status.message = number(code_of(exc)), exc.message
        return answer

    @unary
    async def BatchReadBlobs(
        self, request: re_pb2.BatchReadBlobsRequest, context: Ctx
    ) -> re_pb2.BatchReadBlobsResponse:
        digests.check_instance(request.instance_name)
        wanted = [digests.checked(d) for d in request.digests]
        _within_batch(sum(d.size_bytes for d in wanted))
        answer = re_pb2.BatchReadBlobsResponse()
        for digest in wanted:
            one = answer.responses.add(digest=digest)
            try:
                one.data = await self.blobs.read(digest)
            except O11nError as exc:
                one.status.code, one.status.message = number(code_of(exc)), exc.message
        return answer

    @streaming
    async def GetTree(  # type: ignore[override,misc]  # stubs: a coroutine of an iterator
        self, request: re_pb2.GetTreeRequest, context: Ctx
    ) -> AsyncIterator[re_pb2.GetTreeResponse]:
        digests.check_instance(request.instance_name)
        walked = await asyncio.to_thread(walk, self.blobs.read_now, request.root_digest)
        found = [d for _, d in walked]
        start = _page_token(request.page_token, len(found))
        size = request.page_size if request.page_size > 0 else 1000
        for offset in range(start, len(found), size):
            after = offset + size
            token = str(after) if after < len(found) else ""
            yield re_pb2.GetTreeResponse(directories=found[offset:after], next_page_token=token)
        if start >= len(found):
            yield re_pb2.GetTreeResponse()


def _within_batch(total: int) -> None:
    if total > MAX_BATCH_BYTES:
        raise BadRequest(
            f"a batch of {total} bytes is over the {MAX_BATCH_BYTES} advertised; use ByteStream"
        )


def _page_token(token: str, count: int) -> int:
    if not token:
        return 0
    if not token.isdigit() or int(token) > count:
        raise BadRequest(f"page_token {token[:40]!r} is not one this server gave")
    return int(token)


class ByteStream(bs_grpc.ByteStreamServicer):
    """Read and Write of blobs by resource name, writes resumable."""

    def __init__(self, blobs: Blobs, uploads: Uploads) -> None:
        self.blobs, self.uploads = blobs, uploads

    @streaming
    async def Read(  # type: ignore[override,misc]  # stubs: a coroutine of an iterator
        self, request: bs_pb2.ReadRequest, context: Ctx
    ) -> AsyncIterator[bs_pb2.ReadResponse]:
        blob = digests.parse_read(request.resource_name)
        digest = re_pb2.Digest(hash=blob.hash, size_bytes=blob.size)
        if request.read_offset < 0 or request.read_limit < 0:
            raise BadRequest("read_offset and read_limit may not be negative")
        if request.read_offset > blob.size:
            raise OutOfRange(f"read_offset {request.read_offset} is past the blob's {blob.size}")
        if not self.blobs.present(digest):
            raise NotFound(f"no blob {digests.text(digest)}")
        end = blob.size
        if request.read_limit:
            end = min(end, request.read_offset + request.read_limit)
        offset = request.read_offset
        while offset < end:
            data = await self.blobs.read_range(digest, offset, min(READ_CHUNK, end - offset))
            if not data:
                raise NotFound(f"blob {digests.text(digest)} went away")
            yield bs_pb2.ReadResponse(data=data)
            offset += len(data)

    @unary
    async def Write(
        self, request_iterator: AsyncIterator[bs_pb2.WriteRequest], context: Ctx
    ) -> bs_pb2.WriteResponse:
        name, upload = None, None
        async for request in request_iterator:
            if name is None:
                name = request.resource_name
                upload = self.uploads.open(name, request.write_offset)
                if upload is None:  # stored already: say so at once, as REAPI allows
                    return bs_pb2.WriteResponse(committed_size=digests.parse_write(name).size)
            elif request.resource_name not in ("", name):
                raise BadRequest("a write stream may name only one resource")
            assert upload is not None
            if request.write_offset != upload.committed:
                raise BadRequest(
                    f"write_offset {request.write_offset}, but {upload.committed} are committed"
                )
            await self.uploads.write(upload, request.data)
            if request.finish_write:
                await self.uploads.finish(name, upload)
                return bs_pb2.WriteResponse(committed_size=upload.committed)
        if upload is None:
            raise BadRequest("an empty write stream")
        return bs_pb2.WriteResponse(committed_size=upload.committed)

    @unary
    async def QueryWriteStatus(
        self, request: bs_pb2.QueryWriteStatusRequest, context: Ctx
    ) -> bs_pb2.QueryWriteStatusResponse:
        size, complete = self.uploads.committed(request.resource_name)
        return bs_pb2.QueryWriteStatusResponse(committed_size=size, complete=complete)


class ActionCacheService(re_grpc.ActionCacheServicer):
    """GetActionResult and UpdateActionResult."""

    def __init__(self, cache: ActionCache) -> None:
        self.cache = cache

    @unary
    async def GetActionResult(
        self, request: re_pb2.GetActionResultRequest, context: Ctx
    ) -> re_pb2.ActionResult:
        instance = digests.check_instance(request.instance_name)
        digest = digests.checked(request.action_digest, "action digest")
        result = await self.cache.get(instance, digest)
        if result is None:
            raise NotFound(f"no cached result for action {digests.text(digest)}")
        return result

    @unary
    async def UpdateActionResult(
        self, request: re_pb2.UpdateActionResultRequest, context: Ctx
    ) -> re_pb2.ActionResult:
        instance = digests.check_instance(request.instance_name)
        digest = digests.checked(request.action_digest, "action digest")
        await self.cache.put(instance, digest, request.action_result)
        return request.action_result


class Execution(re_grpc.ExecutionServicer):
    """Execute and WaitExecution: a stream of the operation until it is done."""

    def __init__(self, executions: Executions, callers: Callers) -> None:
        self.executions, self.callers = executions, callers

    @streaming
    async def Execute(  # type: ignore[override,misc]  # stubs: a coroutine of an iterator
        self, request: re_pb2.ExecuteRequest, context: Ctx
    ) -> AsyncIterator[ops_pb2.Operation]:
        execution = await self.executions.execute(self.callers.of(context), request)
        async for operation in execution.updates():
            yield operation

    @streaming
    async def WaitExecution(  # type: ignore[override,misc]  # stubs: a coroutine of an iterator
        self, request: re_pb2.WaitExecutionRequest, context: Ctx
    ) -> AsyncIterator[ops_pb2.Operation]:
        execution = await self.executions.find(self.callers.of(context), request.name)
        async for operation in execution.updates():
            yield operation


class Operations(ops_grpc.OperationsServicer):
    """GetOperation and CancelOperation on executions."""

    def __init__(self, executions: Executions, callers: Callers) -> None:
        self.executions, self.callers = executions, callers

    @unary
    async def GetOperation(
        self, request: ops_pb2.GetOperationRequest, context: Ctx
    ) -> ops_pb2.Operation:
        execution = await self.executions.find(self.callers.of(context), request.name)
        return execution.operation()

    @unary
    async def CancelOperation(
        self, request: ops_pb2.CancelOperationRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self.executions.cancel(self.callers.of(context), request.name)
        return empty_pb2.Empty()

    @unary
    async def ListOperations(
        self, request: ops_pb2.ListOperationsRequest, context: Ctx
    ) -> ops_pb2.ListOperationsResponse:
        raise Unimplemented("ListOperations: see o11n jobs list --label o11n.reapi.action=...")

    @unary
    async def DeleteOperation(
        self, request: ops_pb2.DeleteOperationRequest, context: Ctx
    ) -> empty_pb2.Empty:
        raise Unimplemented("DeleteOperation: operations are jobs, kept in the job history")
