"""Reading the container engine's streams: the exec wrapper's end lines, and
deadlines that shut a client's responses from another thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any


class EndLine:
    """Finds the exec wrapper's end line in one output stream: what precedes it is the
    command's output; a tail that may be the start of one is held back meanwhile."""

    def __init__(self, end: bytes) -> None:
        self.end = end  # `\036` and a random token: it appears nowhere else
        self.held = b""
        self.code: int | None = None  # once the end line has come whole

    def feed(self, chunk: bytes) -> bytes:
        """The command's output in `chunk` and what was held back before it."""
        if self.code is not None:
            return b""  # after its end: a background process's, dropped as podman does
        data = self.held + chunk
        at = data.find(self.end)
        if at < 0:
            at = start_of(data, self.end)
            self.held = data[at:]
            return data[:at]
        code, newline, _ = data[at + len(self.end) :].partition(b"\n")
        if newline:
            self.code, self.held = (int(code) if code.isdigit() else -1), b""
        else:
            self.held = data[at:]
        return data[:at]


def start_of(data: bytes, end: bytes) -> int:
    """Where a tail of `data` that could begin `end` starts (`len(data)` when none can):
    `end` holds its first byte only once, so that is the last such byte."""
    at = data.rfind(end[:1], max(0, len(data) - len(end) + 1))
    return at if at >= 0 and end.startswith(data[at:]) else len(data)


class Deadline:
    """Shuts down the sockets of a client's responses once it expires (from any thread).
    Responses are held weakly: a client that lives long does not keep them all."""

    def __init__(self) -> None:
        self.expired = threading.Event()
        self._responses: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def watch(self, response: Any, *_args: Any, **_kwargs: Any) -> Any:
        """A requests response hook: keep the response, shut it if already expired."""
        with self._lock:
            self._responses.add(response)
            if self.expired.is_set():
                shut(response)
        return response

    def expire(self) -> None:
        with self._lock:
            self.expired.set()
            for response in list(self._responses):
                shut(response)

    def close(self) -> None:
        for response in list(self._responses):
            with contextlib.suppress(Exception):
                response.close()


def shut(response: Any) -> None:
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
