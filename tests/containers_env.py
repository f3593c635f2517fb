"""The container test environment: podman's Docker API, a local registry, test images.

`.ci/install-containers` sets it up (as root): rootful podman 4.3 serving the Docker
Engine API on `SOCKET`, Debian's docker-registry on `REGISTRY` (plain HTTP, marked
insecure for podman), and two images built offline from busybox-static that live only
in the registry: `BUSYBOX` and `BUSYBOX2`, told apart by `/etc/o11n-image` ("1" or
"2"). Use `remove_local` before a test that must go through the pull path.

Facts the helpers lean on (podman 4.3.1, docker SDK 7.1, API version 1.41):
- A failed pull answers 200 and puts the registry's message in the stream's last
  event (`{"error": ..., "errorDetail": {"message": ...}}`); the high-level
  `images.pull` drops it and raises `ImageNotFound` ("No such image") instead.
- `api.pull` passes `timeout=None` to requests, so the client's timeout does not bound
  it: against a registry that never answers it blocks until podman gives up (about 80 s
  of TLS handshake retries). `pull_with_deadline` shuts the pull's socket down at the
  deadline; podman then cancels the pull.
- An exec's `Pid` (exec_inspect) is a host pid and leads its own process group: kill
  the group (`os.killpg`) to end the exec with everything it started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors

SOCKET = "/run/podman/podman.sock"
DOCKER_HOST = f"unix://{SOCKET}"
REGISTRY = "127.0.0.1:5000"
BUSYBOX = f"{REGISTRY}/o11n/busybox:1"
BUSYBOX2 = f"{REGISTRY}/o11n/busybox:2"
MISSING = f"{REGISTRY}/o11n/missing:1"
HANGING_PORT = 5999  # marked insecure in registries.conf.d/o11n.conf, like REGISTRY
INSTALL_HINT = "run `bash .ci/install-containers` as root"


def remove_containers_of(workdir: Path) -> None:
    """Remove the containers of the worker with this work directory (label o11n.workdir):
    a worker killed outright cannot remove its warm ones. Without podman, nothing to do."""
    if not os.path.exists(SOCKET):
        return
    api = docker.APIClient(base_url=DOCKER_HOST)
    try:
        label = f"o11n.workdir={workdir.resolve()}"
        for container in api.containers(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.DockerException):
                api.remove_container(container["Id"], force=True)
    except docker.errors.DockerException:
        pass  # the engine is not answering: nothing it could remove either
    finally:
        api.close()


def docker_client(timeout: float = 60.0) -> docker.DockerClient:
    """A client of podman's Docker API; fails with a hint when the service is not up."""
    if not os.path.exists(SOCKET):
        raise RuntimeError(f"no podman API socket at {SOCKET}: {INSTALL_HINT}")
    client = docker.DockerClient(base_url=DOCKER_HOST, timeout=int(timeout))
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        client.close()
        raise RuntimeError(
            f"podman's API at {SOCKET} does not answer ({exc}): {INSTALL_HINT}"
        ) from exc
    return client


def split_image(image: str) -> tuple[str, str]:
    """`repository, tag` of an image reference; the tag defaults to `latest`."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"


def remove_local(image: str, client: docker.DockerClient | None = None) -> None:
    """Remove the image from podman's local store (if there), so that the next use pulls.

    Forced: podman also removes every container of that image, running ones included.
    """
    own = client is None
    engine = docker_client() if client is None else client
    try:
        engine.images.remove(image, force=True)
    except docker.errors.NotFound:  # podman: NotFound "image not known", not ImageNotFound
        pass
    finally:
        if own:
            engine.close()


def pull_error(events: list[dict[str, Any]]) -> str | None:
    """The registry's message in a pull stream's events, or None when none failed."""
    for event in events:
        if "error" in event:
            return str(event.get("errorDetail", {}).get("message") or event["error"])
    return None


def pull_with_deadline(image: str, timeout: float) -> list[dict[str, Any]]:
    """Pull through the low-level API and return the stream's events (an error included);
    raise TimeoutError when the stream has not ended within `timeout` seconds.

    The pull gets a client of its own; a requests response hook hands over the
    streaming response, and at the deadline a timer shuts its socket down, which ends
    the blocked read at once (closing the response from another thread does not) and
    makes podman cancel the pull.
    """
    repository, tag = split_image(image)
    api = docker.APIClient(base_url=DOCKER_HOST)
    expired = threading.Event()
    responses: list[Any] = []
    lock = threading.Lock()

    def shut(response: Any) -> None:
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            responses.append(response)
            if expired.is_set():
                shut(response)
        return response

    def expire() -> None:
        with lock:
            expired.set()
            for response in responses:
                shut(response)

    api.hooks["response"].append(hook)
    timer = threading.Timer(timeout, expire)
    timer.start()
    events: list[dict[str, Any]] = []
    try:
        for event in api.pull(repository, tag=tag, stream=True, decode=True):
            events.append(event)
    except Exception as exc:
        if expired.is_set():
            raise TimeoutError(f"pull of {image}: no end within {timeout:g}s") from exc
        raise
    finally:
        timer.cancel()
        for response in responses:
            response.close()
        api.close()
    if expired.is_set():
        raise TimeoutError(f"pull of {image}: no end within {timeout:g}s")
    return events


class HangingRegistry:
    """A TCP listener that accepts connections and never answers: a registry that hangs.

    It takes `HANGING_PORT` (marked insecure for podman) when free, else any free port.
    `accepted` counts the connections made to it, so a test can tell whether podman is
    still trying.
    """

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", HANGING_PORT))
        except OSError:
            self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        port = int(self._listener.getsockname()[1])
        self.address = f"127.0.0.1:{port}"
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-registry", daemon=True)

    @property
    def accepted(self) -> int:
        """How many connections were accepted so far."""
        return len(self._conns)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)

    def __enter__(self) -> HangingRegistry:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for conn in self._conns:
            conn.close()


@contextlib.contextmanager
def hanging_registry() -> Iterator[str]:
    """The address (`host:port`) of a registry that accepts and never answers."""
    with HangingRegistry() as registry:
        yield registry.address


@dataclass(frozen=True)
class Run:
    """What a finished container left: its exit code, streams and OOM flag."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    oom_killed: bool
    seconds: float


def run_container(
    client: docker.DockerClient, image: str, command: list[str] | str, **options: Any
) -> Run:
    """Create, start, wait for and remove a container (`docker run --rm`, by the API);
    `options` go to `containers.create` (mem_limit, network_mode, volumes, ...)."""
    began = time.monotonic()
    container = client.containers.create(image, command, **options)
    try:
        container.start()
        status = container.wait(timeout=60)
        seconds = time.monotonic() - began
        stdout = container.logs(stdout=True, stderr=False)
        stderr = container.logs(stdout=False, stderr=True)
        container.reload()
        state = container.attrs["State"]
    finally:
        container.remove(force=True)
    code = int(status["StatusCode"])
    return Run(code, stdout, stderr, bool(state.get("OOMKilled")), seconds)


@dataclass(frozen=True)
class ExecRun:
    """What a finished exec left: its exit code and streams."""

    exit_code: int
    stdout: bytes
    stderr: bytes


def exec_run(client: docker.DockerClient, container_id: str, command: list[str]) -> ExecRun:
    """Run a command in a running container; stdout and stderr apart (demux)."""
    exec_id = client.api.exec_create(container_id, command)["Id"]
    stdout, stderr = client.api.exec_start(exec_id, demux=True)
    code = client.api.exec_inspect(exec_id)["ExitCode"]
    return ExecRun(int(code), stdout or b"", stderr or b"")


@contextlib.contextmanager
def exec_stream(
    container_id: str, command: list[str]
) -> Iterator[tuple[str, Iterator[tuple[bytes | None, bytes | None]]]]:
    """Start an exec and give its id and its (stdout, stderr) chunks as they come.

    `exec_start(stream=True)` never closes its connection (a ResourceWarning, an error
    under this project's pytest settings); this closes it on exit, through a client of
    its own whose response hook keeps the streaming response.
    """
    api = docker.APIClient(base_url=DOCKER_HOST)
    responses: list[Any] = []
    api.hooks["response"].append(lambda response, *args, **kwargs: responses.append(response))
    try:
        exec_id = str(api.exec_create(container_id, command)["Id"])
        yield exec_id, api.exec_start(exec_id, stream=True, demux=True)
    finally:
        for response in responses:
            response.close()
        api.close()


def wait_exec_pid(client: docker.DockerClient, exec_id: str, timeout: float = 5.0) -> int:
    """The host pid of a started exec (exec_inspect's `Pid`), once podman reports it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = int(client.api.exec_inspect(exec_id).get("Pid") or 0)
        if pid:
            return pid
        time.sleep(0.02)
    raise TimeoutError(f"exec {exec_id} reported no pid within {timeout:g}s")


def euid_probe() -> bytes:
    """An attacker's payload: a static x86-64 Linux program (no libc, no loader) that
    exits with its effective uid's low byte, so 0 means it ran as root. Busybox drops a
    set-user-ID root's privileges by itself; a program of one's own does not."""
    code = bytes.fromhex(
        "b86b000000"  # mov eax, 107 (geteuid)
        "0f05"  # syscall
        "89c7"  # mov edi, eax
        "b83c000000"  # mov eax, 60 (exit)
        "0f05"  # syscall
    )
    base, size = 0x400000, 64 + 56 + len(code)
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + code
