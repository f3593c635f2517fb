"""o11n's errors as gRPC status codes: the REAPI adapter's one table."""

from __future__ import annotations

import grpc

from o11n.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MissingBlobs,
    NotFound,
    O11nError,
    OutOfRange,
    Unauthorized,
    Unavailable,
    Unimplemented,
)
from o11n.reapi.protos import error_details_pb2, status_pb2

CODES: dict[type[O11nError], grpc.StatusCode] = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    MissingBlobs: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}


def code_of(exc: O11nError) -> grpc.StatusCode:
    """The gRPC code of an o11n error, by its nearest class in CODES."""
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


def number(code: grpc.StatusCode) -> int:
    """A gRPC code as google.rpc.Code numbers it."""
    value: int = code.value[0]
    return value


def status_of(exc: O11nError) -> status_pb2.Status:
    """A google.rpc.Status for an error; missing blobs are listed as REAPI asks, in a
    PreconditionFailure with one MISSING violation per blob."""
    status = status_pb2.Status(code=number(code_of(exc)), message=exc.message)
    if isinstance(exc, MissingBlobs):
        failure = error_details_pb2.PreconditionFailure()
        for blob in exc.blobs:
            failure.violations.add(type="MISSING", subject=blob)
        status.details.add().Pack(failure)
    return status


def status(code: grpc.StatusCode, message: str) -> status_pb2.Status:
    """A google.rpc.Status of a code and message."""
    return status_pb2.Status(code=number(code), message=message)
