"""The generated REAPI, ByteStream, long-running operations and google.rpc messages, from
buildgrid-common's stubs (none are copied into o11n); one import site for the package."""

from typing import TypeVar

from buildgrid.common.protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re_pb2,
)
from buildgrid.common.protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2_grpc_aio as re_grpc,
)
from buildgrid.common.protos.build.bazel.semver import semver_pb2
from buildgrid.common.protos.google.bytestream import bytestream_pb2 as bs_pb2
from buildgrid.common.protos.google.bytestream import bytestream_pb2_grpc_aio as bs_grpc
from buildgrid.common.protos.google.longrunning import operations_pb2 as ops_pb2
from buildgrid.common.protos.google.longrunning import operations_pb2_grpc_aio as ops_grpc
from buildgrid.common.protos.google.rpc import code_pb2, error_details_pb2, status_pb2
from google.protobuf.message import Message

from o11n.errors import BadRequest

M = TypeVar("M", bound=Message)


def parse(message: type[M], data: bytes, what: str) -> M:
    """A protobuf message from a blob; BadRequest when the blob is not one."""
    parsed = message()
    try:
        parsed.ParseFromString(data)
    except Exception:  # protobuf's DecodeError, whatever its implementation
        raise BadRequest(f"{what} is not a {message.__name__}") from None
    return parsed


__all__ = [
    "bs_grpc",
    "bs_pb2",
    "code_pb2",
    "error_details_pb2",
    "ops_grpc",
    "ops_pb2",
    "parse",
    "re_grpc",
    "re_pb2",
    "semver_pb2",
    "status_pb2",
]
