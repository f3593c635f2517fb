"""The process executor: one attempt as a process group in a fresh work directory.

The command runs in its own session (so signals reach the whole tree through
its process group). A timeout or a stop sends SIGTERM to the group, then
SIGKILL after the grace period; when the command exits, whatever it left
behind in its group is killed too. The command's own process dies with the
worker (PR_SET_PDEATHSIG, set by setpriv); processes it started do not, if the
worker is killed with SIGKILL: only a container (or cgroup) can take a whole
tree down with a dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from o11n.core.jobs import JobSpec
from o11n.core.services import task_env, task_ports
from o11n.errors import BadRequest, O11nError
from o11n.worker.host import dies_with_parent
from o11n.worker.sandbox import Sandbox
from o11n.worker.watchdog import Watchdog, attempt_key

READ_SIZE = 64 * 1024
DEATH_GUARD = dies_with_parent("KILL")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the executor needs to know of the attempt it runs."""

    job_id: int
    number: int
    worker: str
    spec: JobSpec
    tenant: str = ""  # whose job it is: warm containers are never shared across tenants

    @property
    def key(self) -> str:
        """The attempt's name for the watchdog."""
        return attempt_key(self.job_id, self.number)


@dataclass(frozen=True, slots=True)
class Ended:
    """How an attempt's command ended."""

    exit_code: int | None
    signal: int | None
    kind: str | None  # None: judge by exit code; timeout; error (could not start)
    reason: str | None
    started_at: float | None
    ended_at: float
    outputs: str | None = None  # the tree of the outputs stored after a success

    @property
    def succeeded(self) -> bool:
        return self.kind is None and self.exit_code == 0


class Output(Protocol):
    """Where an attempt's output goes (the log shipper)."""

    async def write(self, stream: str, data: bytes) -> None: ...


def command_parts(command: list[str] | str) -> list[str]:
    """An argv list runs as is; a string is a script for `sh -e`."""
    return ["/bin/sh", "-e", "-c", command] if isinstance(command, str) else list(command)


def job_env(attempt: Attempt) -> dict[str, str]:
    """The worker's environment without its own O11N_* settings, then the attempt's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    env.update(attempt_env(attempt))
    return env


def attempt_env(attempt: Attempt) -> dict[str, str]:
    """The job's env, a service task's PORT_<NAME> and O11N_HOST_IP (from the field only the
    scheduler sets, never from the job's env), and O11N_*.

    `O11N_FENCE` grows with every attempt of a job: a side effect outside o11n (a
    deploy, an upload) that records the highest fence it has seen and refuses lower
    ones can never be applied by an attempt older than the newest."""
    return {
        **attempt.spec.env,
        **task_env(attempt.spec.service),
        "O11N_JOB_ID": str(attempt.job_id),
        "O11N_ATTEMPT": str(attempt.number),
        "O11N_FENCE": str(attempt.number),
        "O11N_WORKER": attempt.worker,
        "O11N_CPUS": f"{max(1, round(attempt.spec.resources.cpu))}",
    }


class Files(Protocol):
    """Where a job's input tree comes from and its outputs go (worker.files)."""

    async def lay_out(self, digest: str, dest: Path) -> None: ...

    async def store(
        self, cwd: Path, patterns: list[str], required: bool = True, *, beneath: Path | None = None
    ) -> str: ...


class Runner(Protocol):
    """Runs an attempt's command in a prepared work directory (the container runner)."""

    async def run_in(
        self,
        cwd: Path,
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> Ended: ...

    def sweep(self, worker: str, workdir: Path) -> None:
        """Remove what an earlier run of this worker left (after a crash)."""

    def close(self) -> None:
        """Release what it keeps between attempts (warm containers)."""


class Executor:
    """Runs attempts in fresh work directories: as local processes, or in their image.

    `mode` is `auto` (a job that names an image runs in a container, others as
    processes), `process` (images are refused) or `container` (every job needs an
    image).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        files: Files | None = None,
        containers: Runner | None = None,
        mode: str = "auto",
        sandbox: Sandbox | None = None,
        watchdog: Watchdog | None = None,
        keep_workdirs: bool = False,
        kill_grace: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workdir = workdir
        self.files = files
        self.containers = containers
        self.mode = mode
        self.sandbox = sandbox
        self.watchdog = watchdog
        self.keep_workdirs = keep_workdirs
        self.kill_grace = kill_grace
        self.clock = clock

    def sweep(self, worker: str) -> None:
        """Remove the containers an earlier run of this worker left (blocking)."""
        if self.containers is not None:
            self.containers.sweep(worker, self.workdir)

    def close(self) -> None:
        """Release what is kept between attempts: the warm containers (blocking)."""
        if self.containers is not None:
            self.containers.close()

    def _refusal(self, attempt: Attempt) -> str | None:
        image = attempt.spec.image
        if image and (self.mode == "process" or self.containers is None):
            return f"this worker runs no containers (--executor {self.mode}); the job needs {image}"
        if not image and self.mode == "container":
            return "this worker runs only jobs with an image (--executor container)"
        return None

    async def run(
        self,
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> Ended:
        """Run the attempt to its end, a timeout or a stop; output goes to `logs`."""
        refusal = self._refusal(attempt)
        if refusal is not None:
            return self._error(refusal)
        cwd = self.workdir / f"job-{attempt.job_id}-{attempt.number}"
        shutil.rmtree(cwd, ignore_errors=True)
        cwd.mkdir(parents=True)
        spec = attempt.spec
        try:
            if spec.files and self.files is not None:
                try:
                    await self.files.lay_out(spec.files, cwd)
                except (O11nError, OSError) as exc:
                    return self._error(f"cannot lay out the job's files: {_text(exc)}")
            try:
                run_dir = _prepare_run_dir(cwd, spec)
            except (O11nError, OSError) as exc:
                return self._error(f"cannot prepare the work directory: {_text(exc)}")
            if spec.image and self.containers is not None:
                ended = await self.containers.run_in(cwd, attempt, logs, stop, on_start)
            else:
                ended = await self._run_in(cwd, run_dir, attempt, logs, stop, on_start)
            return await self._store_outputs(cwd, run_dir, spec, ended)
        finally:
            if not self.keep_workdirs:
                shutil.rmtree(cwd, ignore_errors=True)

    async def _store_outputs(self, cwd: Path, run_dir: Path, spec: JobSpec, ended: Ended) -> Ended:
        """Store the outputs: an artifact's after a success, an action's after any run.
        They are read from `run_dir` reached from `cwd` following no link: the job could
        have swapped a folder of its `workdir` for a link out of its own folder."""
        action = spec.outputs_mode == "action"
        ran = ended.kind in (None, "timeout") if action else ended.succeeded
        if not (ran and spec.outputs and self.files is not None):
            return ended
        try:
            outputs = await self.files.store(
                run_dir, list(spec.outputs), required=not action, beneath=cwd
            )
        except (O11nError, OSError) as exc:
            return dataclasses.replace(
                ended, kind="error", reason=f"cannot store outputs: {_text(exc)}"
            )
        return dataclasses.replace(ended, outputs=outputs)

    def _error(self, reason: str) -> Ended:
        return Ended(None, None, "error", reason, None, self.clock())

    async def _run_in(
        self,
        cwd: Path,
        run_dir: Path,
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> Ended:
        env = job_env(attempt)
        command = command_parts(attempt.spec.command)
        missing = _not_runnable(command[0], run_dir, env)
        if missing:
            return self._error(f"cannot run {command[0]!r}: {missing}")
        if self.sandbox is None:
            return await self._spawned(
                [*DEATH_GUARD, *command], run_dir, env, attempt, logs, stop, on_start
            )
        uid = self.sandbox.pool.take()
        try:
            await asyncio.to_thread(self.sandbox.hand_over, cwd, run_dir, uid)
            network = attempt.spec.network or bool(task_ports(attempt.spec))
            argv = self.sandbox.argv(command, cwd, run_dir, uid, network)
            env.update(HOME="/tmp", TMPDIR="/tmp")  # the sandbox's own, private
            return await self._spawned(argv, run_dir, env, attempt, logs, stop, on_start)
        finally:
            self.sandbox.pool.give_back(uid)

    async def _spawned(
        self,
        argv: list[str],
        run_dir: Path,
        env: dict[str, str],
        attempt: Attempt,
        logs: Output,
        stop: asyncio.Event,
        on_start: Callable[[float], None],
    ) -> Ended:
        """Run `argv` as the attempt's process group, guarded by the watchdog."""
        try:
            proc, exited = await _spawn(
                argv,
                cwd=run_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return self._error(f"cannot run {argv[0]!r}: {_text(exc)}")
        if self.watchdog is not None:
            self.watchdog.guard(attempt.key, proc.pid)
        started_at = self.clock()
        on_start(started_at)
        readers = [
            asyncio.create_task(_pump(proc.stdout, "stdout", logs)),
            asyncio.create_task(_pump(proc.stderr, "stderr", logs)),
        ]
        kind, reason = await self._wait(proc, exited, attempt.spec.timeout, stop)
        _kill_group(proc.pid, signal.SIGKILL)  # what the command left behind
        await asyncio.gather(*readers)
        code = proc.returncode
        sig = -code if code is not None and code < 0 else None
        if sig is None and self.sandbox is not None and code is not None and code > 128:
            sig = code - 128  # bubblewrap exits 128+N for a command killed by signal N
        exit_code = 128 + sig if sig is not None else code
        return Ended(exit_code, sig, kind, reason, started_at, self.clock())

    async def _wait(
        self,
        proc: asyncio.subprocess.Process,
        exited: asyncio.Future[None],
        timeout: float,
        stop: asyncio.Event,
    ) -> tuple[str | None, str | None]:
        kind, reason = await wait_or_stop(exited, stop, timeout)
        if kind is not None:
            await self._terminate(proc, exited)
        return kind, reason

    async def _terminate(
        self, proc: asyncio.subprocess.Process, exited: asyncio.Future[None]
    ) -> None:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.kill_grace)
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await exited


async def wait_or_stop(
    work: asyncio.Future[Any], stop: asyncio.Event, timeout: float
) -> tuple[str | None, str | None]:
    """Wait for `work` to end; (None, None) when it did, else (kind, reason) of why it
    must be stopped: `lost` when the worker stops it, `timeout` past `timeout` seconds."""
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            [work, stopped], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopped.cancel()
    if work in done:
        return None, None
    if stopped in done:
        return "lost", "stopped by the worker"
    return "timeout", f"timed out after {timeout:g}s"


class _Watched(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves `exited` when the process exits, even while its pipes are still open
    (Process.wait() waits for the pipes too, which a background child may hold)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=READ_SIZE, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _spawn(
    argv: list[str], **options: Any
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(lambda: _Watched(loop), *argv, **options)
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def run_dir_of(cwd: Path, spec: JobSpec) -> Path:
    """The folder the command runs in: the attempt's folder, or its `workdir` inside it."""
    return cwd / spec.workdir if spec.workdir else cwd


def _prepare_run_dir(cwd: Path, spec: JobSpec) -> Path:
    """Make the command's folder and, for a build action, the folders its outputs go in
    (the Remote Execution API has the server make them); none may leave `cwd`."""
    if not spec.workdir and spec.outputs_mode != "action":
        return cwd  # an ordinary job: nothing to make or check
    run_dir = run_dir_of(cwd, spec)
    folders = [run_dir]
    if spec.outputs_mode == "action":
        folders += [(run_dir / output).parent for output in spec.outputs]
    root = cwd.resolve()
    for folder in folders:
        if not folder.resolve().is_relative_to(root):
            raise BadRequest(f"{folder} is outside the work directory")
        folder.mkdir(parents=True, exist_ok=True)
    return run_dir


def _not_runnable(program: str, cwd: Path, env: dict[str, str]) -> str | None:
    """Why `program` cannot be executed, or None (checked here: under setpriv an exec
    failure would look like the command's own exit code 127)."""
    if "/" in program:
        path = cwd / program
        if not path.exists():
            return "No such file or directory"
        return None if os.access(path, os.X_OK) else "Permission denied"
    return None if _on_path(program, env.get("PATH", os.defpath)) else "command not found"


_FOUND: set[tuple[str, str]] = set()


def _on_path(program: str, path: str) -> bool:
    """Is `program` on `path`? Found ones are remembered (a PATH search is a dozen stats)."""
    if (program, path) in _FOUND:
        return True
    if shutil.which(program, path=path) is None:
        return False
    _FOUND.add((program, path))
    return True


async def _pump(stream: asyncio.StreamReader | None, name: str, logs: Output) -> None:
    if stream is None:
        return
    while data := await stream.read(READ_SIZE):
        await logs.write(name, data)


def _text(exc: Exception) -> str:
    if isinstance(exc, O11nError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
