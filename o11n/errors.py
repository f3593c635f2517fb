"""The one error hierarchy of o11n; each adapter maps it to its own status codes."""

from __future__ import annotations


class O11nError(Exception):
    """Base of every error o11n raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(O11nError):
    """The input is malformed or out of bounds."""

    code = "bad_request"


class BlobMismatch(O11nError):
    """A blob on disk whose content is not the one its digest names (changed since it was
    stored or fetched)."""

    code = "blob_mismatch"

    def __init__(self, digest: str) -> None:
        super().__init__(f"the copy of blob {digest} on disk does not hold that content")
        self.digest = digest


class Unauthorized(O11nError):
    """No token, or a token nobody issued."""

    code = "unauthorized"


class Forbidden(O11nError):
    """A valid token that may not do this."""

    code = "forbidden"


class NotFound(O11nError):
    """No such object, or one the caller may not see."""

    code = "not_found"


class NotRegistered(NotFound):
    """A worker the scheduler does not know (it restarted): the worker registers again."""

    code = "worker_not_registered"


class Conflict(O11nError):
    """The object is not in a state that allows this."""

    code = "conflict"


class InvalidTransition(Conflict):
    """A job state change that the transition table does not allow."""

    code = "invalid_transition"


class LeaseExpired(Conflict):
    """A report from an attempt whose lease has expired or was superseded."""

    code = "lease_expired"


class Unavailable(O11nError):
    """The service cannot take this right now; the caller should retry."""

    code = "unavailable"


class SpecError(BadRequest):
    """A bad pipeline or job file, with where in the file."""

    code = "spec_error"

    def __init__(self, message: str, file: str = "", line: int = 0, column: int = 0) -> None:
        where = f"{file}:{line}:{column}: " if file else ""
        super().__init__(where + message)
        self.file, self.line, self.column = file, line, column


class OutOfRange(BadRequest):
    """A read or write position past the end of what there is."""

    code = "out_of_range"


class MissingBlobs(Conflict):
    """Blobs that the request refers to are not in the content-addressed store."""

    code = "missing_blobs"

    def __init__(self, blobs: list[str]) -> None:
        shown = ", ".join(blobs[:5]) + (f" and {len(blobs) - 5} more" if len(blobs) > 5 else "")
        super().__init__(f"missing from the content-addressed store: {shown}")
        self.blobs = blobs


class Unimplemented(O11nError):
    """A call this server does not offer."""

    code = "unimplemented"
