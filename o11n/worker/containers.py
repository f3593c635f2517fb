"""The container runner: an attempt in its own image, through the Docker Engine API.

It works the same against Docker and against podman's Docker-compatible socket
(`DOCKER_HOST`). The image is looked up first and pulled only when missing;
the worker bounds a pull by its own deadline (the SDK's timeout does not), one
pull of an image serves every job that waits for it, and a failed pull ends
the job as `error` with the registry's own message, read from the pull
stream.

Every container starts with an idle first process and runs the attempt as an
exec; warm containers (one per tenant, image, limits, network and work root)
serve one attempt after another, a fresh one serves one and is removed. What a
job can reach:

- only its own folder, which is laid out where no container reaches, handed to
  the job's uid (65534, never root) and moved into the container's slot (the one
  host folder it mounts, at `/o11n`, `nosuid,nodev`) for the run; never the work
  root or `.cas`;
- no capabilities, `no-new-privileges`, a read-only root file system and a
  private `/tmp`; CPU and memory limits always (a default memory limit when the
  job asks for none, a CPU floor for `cpu: 0`), pids limited, no network unless
  the job asks for it;
- nothing of the job outlives its exec: the exec's wrapper kills every process of
  the job's uid (the idle ones run as another uid) and the worker checks from the
  host, in the container's cgroup, that none is left before it moves the folder
  back out and reads the outputs; a container where one is left is removed;
- nothing outlives the worker: the idle process reads the worker's keep-alive
  FIFO and ends the container at EOF, when the worker dies.

A service task's host ports are published on its agent's address (the same
number inside), so it is reachable where the scheduler says it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import logging
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.utils import kwargs_from_env
from docker.utils.socket import STDERR, frames_iter

from o11n.core.services import task_ports
from o11n.worker.executor import (
    Attempt,
    Ended,
    Output,
    attempt_env,
    command_parts,
    run_dir_of,
    wait_or_stop,
)
from o11n.worker.slots import (
    KeepAlive,
    forget,
    forget_dead,
    hand_over,
    held,
    new_slot,
    procs_file,
    remove_slots,
    wait_alone,
)
from o11n.worker.streams import Deadline, EndLine
from o11n.worker.watchdog import Watchdog

log = logging.getLogger(__name__)
PIDS_LIMIT = 4096
DOCKER_SOCKET = "/var/run/docker.sock"
PODMAN_SOCKET = "/run/podman/podman.sock"
READ_SIZE = 64 * 1024
CPU_FLOOR = 0.01  # cores: `cpu: 0` never means no limit
ALIVE = "/.o11n-alive"  # where the keep-alive FIFO is, inside
SLOT = "/o11n"  # where the slot is, inside: an attempt's folder is /o11n/job-ID-N


@dataclass(frozen=True)
class ContainerConfig:
    """How a worker runs containers."""

    docker_host: str | None = None  # default: $DOCKER_HOST, else the SDK's default
    allow_images: tuple[str, ...] = ("*",)
    pull_timeout: float = 300.0
    kill_grace: float = 10.0
    reuse: bool = True  # warm containers, one exec per attempt
    warm_per_key: int = 4  # kept per (tenant, image, limits, network)
    idle_timeout: float = 300.0
    discard_failed: bool = False  # a non-zero exit may have dirtied its container
    # Jobs with no memory request get this limit: a runaway job cannot take the
    # machine, and the same job gets the same limit on every worker.
    default_memory: int = 2 * 2**30
    job_uid: int = 65534  # nobody: the jobs' uid (and gid) when the worker is root
    idle_uid: int = 65533  # the idle processes': a job cannot signal them
    leftover_wait: float = 2.0  # seconds the job's killed processes get to be gone


# A container's own writable places, emptied after each exec.
TEMPORARY = "/tmp/* /tmp/.[!.]* /tmp/..?* /var/tmp/* /dev/shm/* /dev/mqueue/*"
# tenant, image, cpu, memory, network, work root
WarmKey = tuple[str, str, float, int, bool, str]
# The command goes first in the line for the OOM killer (oom_score_adj 1000 in the
# subshell it replaces, which costs no fork that running it would not: at the memory
# limit the job's processes go, not this shell or the idle ones), then an end line goes
# on both streams: `<end><exit code>`. Podman 4.3 forgets an ended exec (no exit code)
# and closes its stream ~40 ms after the command exits; the end lines carry the code
# and show that all of the output has come. Then every process of the job's uid is killed (kill(-1)
# spares pid 1, which runs as another uid anyway, and this shell) and the temporary
# folders are emptied; the worker waits, reading the container's cgroup, until this
# shell is gone too.
ENDING_SCRIPT = (
    'end=$1; shift; (echo 1000 2>/dev/null > /proc/self/oom_score_adj; exec "$@"); '
    'set -- "$end$?"; echo "$1"; echo "$1" >&2; kill -9 -1; '
    f"for f in {TEMPORARY}; do [ -e $f ] && {{ rm -rf {TEMPORARY}; break; }}; done 2>/dev/null"
)
EXEC_WRAPPER = ["/bin/sh", "-c", ENDING_SCRIPT, "o11n"]
# The first process waits (reaping orphans) for a subshell that reads the keep-alive
# FIFO; the read ends, and with it the container, when the worker dies.
IDLE_COMMAND = ["/bin/sh", "-c", f"(read -r _ < {ALIVE}); exit 0"]


@dataclass
class Warm:
    """A running container, with the slot it mounts; kept for the next attempt with the
    same key when it is warm."""

    container: Container
    key: WarmKey
    last_used: float
    slot: Path
    pid: int  # its first process's host pid
    procs: Path | None  # its cgroup.procs as the host sees it; None: cannot be checked


class PullFailed(Exception):
    """An image could not be pulled; the message is the registry's."""


def image_name(image: str) -> str:
    """The image as the engine names it: a `docker://` prefix is stripped."""
    return image.removeprefix("docker://")


class ContainerRunner:
    """Runs attempts in containers: warm ones, one exec per attempt, or fresh ones."""

    def __init__(
        self,
        config: ContainerConfig,
        clock: Callable[[], float] = time.time,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.watchdog = watchdog  # kills the container at the lease deadline
        self._client: docker.DockerClient | None = None
        self._pulls: dict[str, asyncio.Future[None]] = {}
        self.warm: dict[WarmKey, list[Warm]] = {}
        self._threads = concurrent.futures.ThreadPoolExecutor(32, "o11n-containers")
        self._open = Deadline()  # every response of the engine; close() shuts them
        self._dropping: dict[str, Warm] = {}  # warm containers being removed
        self._alive = KeepAlive()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            base = self._base()
            self._client = docker.DockerClient(base_url=base) if base else docker.from_env()
            self._client.api.hooks["response"].append(self._open.watch)
        return self._client

    def _base(self) -> str | None:
        """The engine: --docker-host, $DOCKER_HOST, Docker's socket, else podman's."""
        base = self.config.docker_host or os.environ.get("DOCKER_HOST")
        if base is None and not Path(DOCKER_SOCKET).exists() and Path(PODMAN_SOCKET).exists():
            return f"unix://{PODMAN_SOCKET}"
        return base

    @property
    def job_user(self) -> tuple[int, int]:
        """The uid and gid jobs run as: never root, never a root worker's own."""
        if os.geteuid() == 0:
            return self.config.job_uid, self.config.job_uid
        return os.getuid(), os.getgid()  # a worker that is not root cannot hand folders over

    def allowed(self, image: str) -> bool:
        """Does the worker's allow-list admit this image?"""
        return any(fnmatch.fnmatchcase(image, p) for p in self.config.allow_images)

    async def run_in(
        self,
        cwd: Path,
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> Ended:
        """Run the attempt in its image, in `cwd` (laid out, and reached by no container
        yet); as the process executor reports. Once it returns, no process of the
        attempt is left and `cwd` is back where it was."""
        assert attempt.spec.image is not None
        image = image_name(attempt.spec.image)
        if not self.allowed(image):
            allowed = ", ".join(self.config.allow_images)
            return self._error(f"image {image} is not allowed on this worker (allowed: {allowed})")
        reuse = self.config.reuse and not task_ports(attempt.spec)  # ports are its own
        key = self._key(image, cwd, attempt)
        warm = self._take(key) if reuse else None  # a warm one has its image
        if warm is None:
            try:
                await self.ensure_image(image)
                warm = await self._call(self._start_idle, image, cwd.parent, attempt, key)
            except PullFailed as exc:
                return self._error(f"cannot pull {image}: {exc}")
            except docker.errors.DockerException as exc:
                return self._error(f"cannot start a container of {image}: {_explain(exc)}")
        ended, clean = await self._run_there(warm, cwd, attempt, logs, stop, on_start)
        if clean and reuse:
            self._give_back(warm)
        elif clean:
            await self._call(self._remove, warm)
        return ended

    def _key(self, image: str, cwd: Path, attempt: Attempt) -> WarmKey:
        res = attempt.spec.resources
        memory = res.memory or self.config.default_memory
        return (attempt.tenant, image, res.cpu, memory, attempt.spec.network, str(cwd.parent))

    async def ensure_image(self, image: str) -> None:
        """Pull the image unless the engine has it; one pull serves all who wait for it."""
        try:
            await self._call(self.client.images.get, image)
            return
        except docker.errors.ImageNotFound:
            pass
        pull = self._pulls.get(image)
        if pull is None:
            pull = asyncio.ensure_future(self._pull(image))
            self._pulls[image] = pull
            pull.add_done_callback(lambda _f: self._pulls.pop(image, None))
        await asyncio.shield(pull)

    async def _pull(self, image: str) -> None:
        """Pull within the worker's deadline, reading the stream for the registry's errors."""
        try:
            await self._call(self._pull_stream, image)
        except docker.errors.APIError as exc:
            raise PullFailed(_explain(exc)) from None

    def _pull_stream(self, image: str) -> None:
        """The pull, on a connection of its own (a thread). The SDK puts no timeout on a
        pull, and closing its response from another thread blocks: at the deadline a
        timer shuts the socket down, which ends the read at once and makes the engine
        give the pull up."""
        last = image.rsplit("/", 1)[-1]
        repository, tag = image.rsplit(":", 1) if ":" in last else (image, "latest")
        api = self._api()
        deadline = Deadline()
        api.hooks["response"].append(deadline.watch)
        timer = threading.Timer(self.config.pull_timeout, deadline.expire)
        timer.start()
        try:
            for event in api.pull(repository, tag=tag, stream=True, decode=True):
                if isinstance(event, dict) and "error" in event:
                    detail = event.get("errorDetail") or {}
                    raise PullFailed(str(detail.get("message") or event["error"]).strip())
        except PullFailed:
            raise
        except Exception as exc:  # the stream broke: the deadline, or the engine
            if deadline.expired.is_set():
                raise PullFailed(f"no answer within {self.config.pull_timeout:g}s") from None
            raise PullFailed(str(exc)) from None
        finally:
            timer.cancel()
            deadline.close()
            api.close()
        if deadline.expired.is_set():
            raise PullFailed(f"no answer within {self.config.pull_timeout:g}s")
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise PullFailed("the pull ended without the image") from None

    def _api(self) -> docker.APIClient:
        base = self._base()
        return docker.APIClient(base_url=base) if base else docker.APIClient(**kwargs_from_env())

    def _start_idle(self, image: str, root: Path, attempt: Attempt, key: WarmKey) -> Warm:
        """A running container of `image` whose only host folder is a new, empty slot
        under `root` (a thread)."""
        slot = new_slot(root)
        try:
            container = self._create(image, slot, root, attempt, key)
            try:
                container.start()
                container.reload()
            except docker.errors.DockerException:
                self._remove_container(container)
                raise
        except BaseException:
            shutil.rmtree(slot, ignore_errors=True)
            raise
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        return Warm(container, key, self.clock(), slot, pid, procs_file(pid))

    def _create(
        self, image: str, slot: Path, root: Path, attempt: Attempt, key: WarmKey
    ) -> Container:
        cpu, memory = max(key[2], CPU_FLOOR), key[3]
        idle = self.config.idle_uid
        options: dict[str, Any] = {
            "command": IDLE_COMMAND,
            "working_dir": "/",
            "volumes": {
                str(slot): {"bind": SLOT, "mode": "rw,nosuid,nodev"},
                str(self._alive.path): {"bind": ALIVE, "mode": "ro"},
            },
            "user": f"{idle}:{idle}",
            **_network(attempt),
            "pids_limit": PIDS_LIMIT,
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,size=256m"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "nano_cpus": int(cpu * 1e9),
            "mem_limit": memory,
            "memswap_limit": memory,
            "labels": {
                "o11n.job": str(attempt.job_id),
                "o11n.tenant": attempt.tenant,
                "o11n.worker": attempt.worker,
                "o11n.workdir": str(root),  # a worker's own, unlike its name
                "o11n.alive": str(self._alive.path),  # gone: its worker is dead
            },
            "detach": True,
        }
        return self.client.containers.create(image, **options)

    async def _run_there(
        self,
        warm: Warm,
        cwd: Path,
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> tuple[Ended, bool]:
        """Move the attempt's folder into the container's slot, run the attempt, and move
        the folder back once no process of the job is left (the container is removed
        first when one may be). Whether the container is still fit for reuse."""
        inside = warm.slot / cwd.name
        try:
            await self._call(self._move_in, cwd, inside)
        except OSError as exc:
            await self._call(self._remove, warm)
            return self._error(f"cannot hand the work directory over: {exc}"), False
        clean = False
        if self.watchdog is not None and warm.pid:  # its first process: the whole container
            self.watchdog.guard(attempt.key, warm.pid, group=False)
        try:
            ended, clean = await self._exec(warm, cwd, attempt, logs, stop, on_start)
        finally:
            clean = await self._call(self._take_out, warm, clean, inside, cwd)
        return ended, clean

    def _take_out(self, warm: Warm, clean: bool, inside: Path, cwd: Path) -> bool:
        """Move the folder back out once nothing of the job is left in the container:
        when something may be, the container is removed first (a thread). Whether the
        container may be reused."""
        clean = clean and self._alone(warm)
        if not clean:
            self._remove_container(warm.container)
        try:
            _move_out(inside, cwd)
        except OSError as exc:
            log.error("cannot move %s back out of its slot: %s", cwd.name, exc)
            if clean:
                self._remove_container(warm.container)
            clean = False
        if not clean:
            shutil.rmtree(warm.slot, ignore_errors=True)
        return clean

    def _move_in(self, cwd: Path, inside: Path) -> None:
        uid, gid = self.job_user
        hand_over(cwd, uid, gid)
        os.rename(cwd, inside)

    def _alone(self, warm: Warm) -> bool:
        """Is nothing but the idle processes left in the container, and its first one
        still there (read on the host)?"""
        if warm.procs is None:
            return False  # cannot be checked: not reused
        if wait_alone(warm.procs, warm.pid, self.config.idle_uid, self.config.leftover_wait):
            return True
        log.warning(
            "container %s: a job's processes left, or its own gone: removed",
            warm.container.short_id,
        )
        return False

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, lambda: fn(*args, **kwargs))

    def _error(self, reason: str) -> Ended:
        return Ended(None, None, "error", reason, None, self.clock())

    # -- warm containers ---------------------------------------------------------

    def _take(self, key: WarmKey) -> Warm | None:
        self._expire()
        pool = self.warm.get(key)
        if not pool:
            return None
        warm = pool.pop()  # the most recently used
        if not pool:
            del self.warm[key]
        return warm

    def _give_back(self, warm: Warm) -> None:
        warm.last_used = self.clock()
        pool = self.warm.setdefault(warm.key, [])
        pool.append(warm)
        while len(pool) > self.config.warm_per_key:
            self._drop(pool.pop(0))  # the least recently used
        self._expire()

    def _expire(self) -> None:
        limit = self.clock() - self.config.idle_timeout
        for key, pool in list(self.warm.items()):
            for warm in [w for w in pool if w.last_used < limit]:
                pool.remove(warm)
                self._drop(warm)
            if not pool:
                del self.warm[key]

    def _drop(self, warm: Warm) -> None:
        """Remove a warm container in the background (close() finishes what is left)."""
        container_id = str(warm.container.id)
        self._dropping[container_id] = warm
        self._threads.submit(self._remove, warm).add_done_callback(
            lambda _f: self._dropping.pop(container_id, None)
        )

    def _remove(self, warm: Warm) -> None:
        """Remove the container, then its (empty) slot."""
        self._remove_container(warm.container)
        shutil.rmtree(warm.slot, ignore_errors=True)

    @staticmethod
    def _remove_container(container: Container) -> None:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)

    async def _exec(
        self,
        warm: Warm,
        cwd: Path,
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> tuple[Ended, bool]:
        """The attempt as an exec; whether its container may be clean afterwards."""
        api = self.client.api
        uid, gid = self.job_user
        end = f"\036o11n-end-{secrets.token_hex(8)}:"  # no output can fake it by chance
        try:
            made = await self._call(
                api.exec_create,
                warm.container.id,
                [*EXEC_WRAPPER, end, *command_parts(attempt.spec.command)],
                environment=_env(attempt),
                workdir=str(run_dir_of(Path(SLOT, cwd.name), attempt.spec)),
                user=f"{uid}:{gid}",
            )
        except docker.errors.DockerException as exc:
            return self._error(f"cannot run in the container: {_explain(exc)}"), False
        exec_id = made["Id"]
        loop = asyncio.get_running_loop()
        copied: asyncio.Future[int | None] = loop.run_in_executor(
            self._threads, self._copy_exec, exec_id, end.encode(), logs, loop
        )
        started_at = self.clock()
        on_start(started_at)
        kind, reason = await wait_or_stop(copied, stop, attempt.spec.timeout)
        if kind is not None:
            await self._kill_exec(exec_id, copied)
            return Ended(None, None, kind, reason, started_at, self.clock()), False
        try:
            code = await copied
        except Exception:  # the engine broke the stream
            code = None
        if code is None:  # no end line: the container itself died under the command
            return await self._died(warm, started_at), False
        if code == 137:  # SIGKILL from inside: the memory limit, most likely
            reason = "killed (SIGKILL): out of memory at its limit, most likely"
            return Ended(code, 9, "failure", reason, started_at, self.clock()), False
        clean = code == 0 or not self.config.discard_failed
        signal_number = code - 128 if code > 128 else None
        return Ended(code, signal_number, None, None, started_at, self.clock()), clean

    async def _died(self, warm: Warm, started_at: float) -> Ended:
        """How an attempt ended whose container died before the command did."""
        if await self._oom_killed(warm.container):
            reason = "out of memory: the container was killed at its memory limit"
            return Ended(137, 9, "failure", reason, started_at, self.clock())
        return self._error("the container ended before the command did")

    async def _oom_killed(self, container: Container) -> bool:
        """Did the memory limit kill the container? No when the engine no longer has it
        (removed meanwhile, e.g. with its image)."""
        try:
            info = await self._call(self.client.api.inspect_container, container.id)
        except docker.errors.DockerException:
            return False
        return bool(info.get("State", {}).get("OOMKilled"))

    def _copy_exec(
        self, exec_id: str, end: bytes, logs: Output, loop: asyncio.AbstractEventLoop
    ) -> int | None:
        """Follow an exec's output, stdout and stderr apart, into the log (a thread), up
        to the end lines; the exit code they carry, None without them. The raw socket is
        read (and closed) here: the SDK's stream would leave it open."""

        def write(name: str, data: bytes) -> None:
            if data:
                asyncio.run_coroutine_threadsafe(logs.write(name, data), loop).result()

        ends = {"stdout": EndLine(end), "stderr": EndLine(end)}
        sock = self.client.api.exec_start(exec_id, socket=True)
        try:
            for stream, chunk in frames_iter(sock, tty=False):  # type: ignore[no-untyped-call]
                name = "stderr" if stream == STDERR else "stdout"
                write(name, ends[name].feed(chunk))
                if all(e.code is not None for e in ends.values()):
                    break  # all the output has come: no need to wait for podman's close
            for name, line in ends.items():
                write(name, line.held)  # the stream ended: what was held back was output
        finally:
            response = getattr(sock, "_response", None)  # it holds the socket's file
            if response is not None:
                response.close()
            sock.close()
            raw = getattr(sock, "_sock", None)
            if raw is not None:
                raw.close()
        return ends["stdout"].code if ends["stdout"].code is not None else ends["stderr"].code

    async def _kill_exec(self, exec_id: str, copied: asyncio.Future[Any]) -> None:
        """SIGTERM the exec's host process, SIGKILL after the grace (the API cannot)."""
        try:
            info = await self._call(self.client.api.exec_inspect, exec_id)
        except docker.errors.NotFound:
            return  # it ended meanwhile
        pid = int(info.get("Pid") or 0)
        if pid <= 0:
            return
        for sig, wait in ((signal.SIGTERM, self.config.kill_grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(copied), wait)
                return
            except TimeoutError:
                continue
            except Exception:
                return

    def sweep(self, worker: str, workdir: Path) -> None:
        """Remove the containers and slots an earlier run of this worker left (one killed
        outright stops its containers through the keep-alive FIFO, but cannot remove
        them), and the ended containers of dead workers. Its own are found by its name
        and work directory (two workers on a host may share a name, never a work
        directory). Without an engine there is nothing to do."""
        remove_slots(workdir)
        labels = [f"o11n.worker={worker}", f"o11n.workdir={workdir}"]
        try:
            left = self.client.api.containers(all=True, filters={"label": labels})
            left += self._orphans()
        except docker.errors.DockerException:
            return
        forget_dead()
        for container in left:
            with contextlib.suppress(docker.errors.DockerException):
                self.client.api.remove_container(container["Id"], force=True)
        if left:
            log.info("removed %d containers an earlier run of %s left", len(left), worker)

    def _orphans(self) -> list[dict[str, Any]]:
        """The ended containers of any worker on this host that died (nothing holds its
        keep-alive FIFO any more): an autoscaled worker is never started again under its
        name to remove them. (Not the engine's auto-remove: with it podman 4.3 loses the
        exit of some execs.)"""
        ended = self.client.api.containers(
            all=True, filters={"label": "o11n.alive", "status": "exited"}
        )
        dead = [c for c in ended if not held(Path(c["Labels"]["o11n.alive"]))]
        for container in dead:
            forget(Path(container["Labels"]["o11n.alive"]))
        return dead

    def close(self) -> None:
        """Remove the warm containers; release the engine connection, the keep-alive FIFO
        and the threads. Reads still waiting on the engine are shut, so that no thread
        outlives the runner."""
        for pool in self.warm.values():
            for warm in pool:
                self._remove(warm)
        self.warm.clear()
        for warm in list(self._dropping.values()):  # removals still queued
            self._remove(warm)
        self._alive.close()
        self._open.expire()
        if self._client is not None:
            self._client.close()
        self._threads.shutdown(wait=False, cancel_futures=True)


def _move_out(inside: Path, cwd: Path) -> None:
    """Move the attempt's folder back out of its slot (made anew if the job emptied it
    out of existence; it cannot remove the folder itself)."""
    try:
        os.rename(inside, cwd)
    except FileNotFoundError:
        cwd.mkdir(exist_ok=True)


def _env(attempt: Attempt) -> dict[str, str]:
    """The job's env, a service task's PORT_*, and O11N_* (not the worker's own environment)."""
    return attempt_env(attempt)


def _network(attempt: Attempt) -> dict[str, Any]:
    """No network unless the job asks for one. A service task's ports are published on
    its agent's address, as the same port inside, so `$PORT_<NAME>` works in there too
    (a container has to have a network for its ports to be reachable)."""
    ports = task_ports(attempt.spec)
    if not ports:
        return {"network_mode": "bridge" if attempt.spec.network else "none"}
    host_ip = attempt.spec.service.host_ip if attempt.spec.service else None
    published = {f"{port}/tcp": (host_ip, port) if host_ip else port for port in ports.values()}
    return {"network_mode": "bridge", "ports": published}


def _explain(exc: docker.errors.DockerException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)
