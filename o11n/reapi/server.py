"""The REAPI gRPC server, on the scheduler's event loop beside its HTTP server."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from o11n.cas.store import CasStore
from o11n.reapi import servicers
from o11n.reapi.blobs import Blobs
from o11n.reapi.cache import ActionCache
from o11n.reapi.execution import Executions
from o11n.reapi.platform import POLICIES
from o11n.reapi.protos import bs_grpc, ops_grpc, re_grpc
from o11n.reapi.uploads import Uploads
from o11n.scheduler.service import Scheduler


@dataclass(frozen=True)
class ReapiConfig:
    """Where and how the Remote Execution API is served."""

    port: int
    host: str = "127.0.0.1"
    tenant: str = "default"  # whose jobs the actions of callers without a token are
    unknown_properties: str = "require"  # or "ignore"
    default_timeout: float = 3600.0

    def __post_init__(self) -> None:
        if self.unknown_properties not in POLICIES:
            raise ValueError(f"unknown_properties must be one of {', '.join(POLICIES)}")


class ReapiServer:
    """Capabilities, CAS, ByteStream, ActionCache, Execution and Operations on one port."""

    def __init__(self, sched: Scheduler, cas: CasStore, config: ReapiConfig) -> None:
        self.config = config
        self.blobs = Blobs(cas)
        self.cache = ActionCache(sched.db, self.blobs, sched.clock)
        self.cache.load()
        cas.add_keeper(self.cache.needed)  # cached results keep their blobs
        self.uploads = Uploads(self.blobs, sched.clock)
        self.executions = Executions(
            sched,
            self.blobs,
            self.cache,
            unknown_properties=config.unknown_properties,
            default_timeout=config.default_timeout,
        )
        self.callers = servicers.Callers(sched, config.tenant)
        self.server: grpc.aio.Server | None = None
        self.port = 0

    def _server(self) -> grpc.aio.Server:
        """The gRPC server with every servicer (made on the running loop, as grpc.aio asks)."""
        limit = servicers.GRPC_MESSAGE_BYTES
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ]
        )
        re_grpc.add_CapabilitiesServicer_to_server(servicers.Capabilities(), server)
        re_grpc.add_ContentAddressableStorageServicer_to_server(
            servicers.ContentAddressableStorage(self.blobs), server
        )
        bs_grpc.add_ByteStreamServicer_to_server(
            servicers.ByteStream(self.blobs, self.uploads), server
        )
        re_grpc.add_ActionCacheServicer_to_server(servicers.ActionCacheService(self.cache), server)
        re_grpc.add_ExecutionServicer_to_server(
            servicers.Execution(self.executions, self.callers), server
        )
        ops_grpc.add_OperationsServicer_to_server(
            servicers.Operations(self.executions, self.callers), server
        )
        return server

    async def start(self) -> int:
        """Take up actions in flight, and listen; the bound port."""
        await self.executions.start()
        self.server = self._server()
        self.port = self.server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        if not self.port:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        await self.server.start()
        return self.port

    async def stop(self) -> None:
        """Stop taking calls; open streams get a second to end."""
        if self.server is not None:
            await self.server.stop(grace=1.0)
        self.uploads.close()
