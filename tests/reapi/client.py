"""A small REAPI client over real gRPC for the tests: upload blobs, build actions, execute."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from buildgrid.common.protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re_pb2,
)
from buildgrid.common.protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2_grpc as re_grpc,
)
from buildgrid.common.protos.google.bytestream import bytestream_pb2 as bs_pb2
from buildgrid.common.protos.google.bytestream import bytestream_pb2_grpc as bs_grpc
from buildgrid.common.protos.google.longrunning import operations_pb2 as ops_pb2
from buildgrid.common.protos.google.longrunning import operations_pb2_grpc as ops_grpc

from o11n.reapi.digests import of as digest


@dataclass
class Action:
    """An action's messages and the blobs a client uploads for it."""

    action: re_pb2.Action
    command: re_pb2.Command
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> re_pb2.Digest:
        return digest(self.action.SerializeToString(deterministic=True))


def directory(files: dict[str, bytes], blobs: dict[str, bytes]) -> re_pb2.Digest:
    """A Directory (nested by '/') of files, its blobs added to `blobs`; its digest.
    A path that ends in '/' is a folder (empty unless other paths lie under it)."""
    here = re_pb2.Directory()
    subs: dict[str, dict[str, bytes]] = {}
    for path, content in sorted(files.items()):
        head, slash, rest = path.partition("/")
        if slash:
            sub = subs.setdefault(head, {})
            if rest:
                sub[rest] = content
        else:
            d = digest(content)
            blobs[d.hash] = content
            here.files.add(name=head, digest=d, is_executable=path.endswith(".sh"))
    for name in sorted(subs):
        here.directories.add(name=name, digest=directory(subs[name], blobs))
    data = here.SerializeToString(deterministic=True)
    d = digest(data)
    blobs[d.hash] = data
    return d


def make_action(
    argv: list[str],
    *,
    inputs: dict[str, bytes] | None = None,
    output_files: tuple[str, ...] = (),
    output_directories: tuple[str, ...] = (),
    output_paths: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    action_platform: dict[str, str] | None = None,
    command_platform: dict[str, str] | None = None,
    timeout_s: int = 0,
    do_not_cache: bool = False,
    working_directory: str = "",
) -> Action:
    blobs: dict[str, bytes] = {}
    command = re_pb2.Command(
        arguments=argv,
        output_files=output_files,
        output_directories=output_directories,
        output_paths=output_paths,
        working_directory=working_directory,
    )
    for k, v in sorted((env or {}).items()):
        command.environment_variables.add(name=k, value=v)
    for k, v in sorted((command_platform or {}).items()):
        command.platform.properties.add(name=k, value=v)
    command_data = command.SerializeToString(deterministic=True)
    blobs[digest(command_data).hash] = command_data
    action = re_pb2.Action(
        command_digest=digest(command_data),
        input_root_digest=directory(inputs or {}, blobs),
        do_not_cache=do_not_cache,
    )
    action.timeout.seconds = timeout_s
    for k, v in sorted((action_platform or {}).items()):
        action.platform.properties.add(name=k, value=v)
    data = action.SerializeToString(deterministic=True)
    blobs[digest(data).hash] = data
    return Action(action, command, blobs)


class Client:
    """Stubs on one channel."""

    def __init__(self, port: int, instance: str = "") -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.instance = instance
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.bytestream = bs_grpc.ByteStreamStub(self.channel)
        self.ac = re_grpc.ActionCacheStub(self.channel)
        self.execution = re_grpc.ExecutionStub(self.channel)
        self.operations = ops_grpc.OperationsStub(self.channel)
        self.capabilities = re_grpc.CapabilitiesStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def upload(self, blobs: dict[str, bytes]) -> None:
        request = re_pb2.BatchUpdateBlobsRequest(instance_name=self.instance)
        for data in blobs.values():
            request.requests.add(digest=digest(data), data=data)
        for response in self.cas.BatchUpdateBlobs(request).responses:
            assert response.status.code == 0, response.status.message

    def read(self, d: re_pb2.Digest) -> bytes:
        request = re_pb2.BatchReadBlobsRequest(instance_name=self.instance, digests=[d])
        (response,) = self.cas.BatchReadBlobs(request).responses
        assert response.status.code == 0, response.status.message
        return bytes(response.data)

    def execute_stream(
        self, action: Action, skip_cache_lookup: bool = False
    ) -> Iterator[ops_pb2.Operation]:
        request = re_pb2.ExecuteRequest(
            instance_name=self.instance,
            action_digest=action.digest,
            skip_cache_lookup=skip_cache_lookup,
        )
        return iter(self.execution.Execute(request, timeout=120))

    def execute(self, action: Action, skip_cache_lookup: bool = False) -> re_pb2.ExecuteResponse:
        """Upload the action's blobs, execute it, and wait for its response."""
        self.upload(action.blobs)
        *_, last = self.execute_stream(action, skip_cache_lookup)
        assert last.done
        return response_of(last)


def response_of(operation: ops_pb2.Operation) -> re_pb2.ExecuteResponse:
    response = re_pb2.ExecuteResponse()
    assert operation.response.Unpack(response)
    return response


def stage_of(operation: ops_pb2.Operation) -> int:
    meta = re_pb2.ExecuteOperationMetadata()
    assert operation.metadata.Unpack(meta)
    return int(meta.stage)


def write_request(
    name: str, data: bytes, offset: int = 0, finish: bool = True
) -> bs_pb2.WriteRequest:
    return bs_pb2.WriteRequest(
        resource_name=name, write_offset=offset, data=data, finish_write=finish
    )
