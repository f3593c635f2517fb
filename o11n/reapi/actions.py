"""An action as an o11n job: its Action, Command and input root turned into a JobSpec,
and an ended job turned back into an ActionResult."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import ValidationError

from o11n.cas import tree as trees
from o11n.core.jobs import MAX_OUTPUTS, MAX_TIMEOUT_S, Attempt, JobSpec
from o11n.core.reserved import refuse_reserved
from o11n.errors import BadRequest, MissingBlobs, NotFound
from o11n.reapi import digests, directories, platform
from o11n.reapi.blobs import Blobs
from o11n.reapi.protos import parse, re_pb2

ACTION_LABEL = "o11n.reapi.action"
INSTANCE_LABEL = "o11n.reapi.instance"
NO_CACHE_LABEL = "o11n.reapi.do_not_cache"


@dataclass(frozen=True, slots=True)
class Loaded:
    """An action with its command, read from the store and checked."""

    instance: str
    digest: re_pb2.Digest
    action: re_pb2.Action
    command: re_pb2.Command


async def load(blobs: Blobs, instance: str, digest: re_pb2.Digest) -> Loaded:
    """Read an action and its command; MissingBlobs when either is absent."""
    digests.checked(digest, "action digest")
    action = parse(re_pb2.Action, await _read(blobs, digest), f"blob {digests.text(digest)}")
    data = await _read(blobs, digests.checked(action.command_digest, "command digest"))
    command = parse(re_pb2.Command, data, f"blob {digests.text(action.command_digest)}")
    if not command.arguments or not command.arguments[0]:
        raise BadRequest("the command has no arguments")
    return Loaded(instance, digest, action, command)


async def _read(blobs: Blobs, digest: re_pb2.Digest) -> bytes:
    try:
        return await blobs.read(digest)
    except NotFound:
        raise MissingBlobs([f"blobs/{digests.text(digest)}"]) from None


async def input_tree(blobs: Blobs, loaded: Loaded) -> tuple[str, list[str]]:
    """Store the action's input root as an o11n tree for the worker: its digest, and the
    hashes of the blobs the job needs (to pin while it is in flight: the action, its
    command, the tree and the files; the Directory blobs are read only here). MissingBlobs
    names every directory or file blob that is absent."""

    def walk() -> tuple[trees.Tree, list[re_pb2.Digest]]:
        found = directories.walk(blobs.read_now, loaded.action.input_root_digest)
        return directories.input_tree(found), directories.file_digests(found)

    tree, files = await asyncio.to_thread(walk)
    missing = await blobs.missing(files)
    if missing:
        raise MissingBlobs([f"blobs/{digests.text(d)}" for d in missing])
    stored = await blobs.put(trees.to_bytes(tree))
    needed = [loaded.digest, loaded.action.command_digest, stored, *files]
    return stored.hash, [d.hash for d in needed]


def job_spec(
    loaded: Loaded, files: str, *, unknown: str = "require", default_timeout: float = 3600.0
) -> JobSpec:
    """The job that runs an action."""
    action, command = loaded.action, loaded.command
    env = {v.name: v.value for v in command.environment_variables}
    refuse_reserved("the action's command", env, field="environment variable")
    needs = platform.requirements(platform.chosen(action, command), unknown)
    timeout = action.timeout.ToTimedelta().total_seconds() or default_timeout
    outputs = _output_patterns(command)
    resources: dict[str, float | int] = {"cpu": needs.cpu if needs.cpu is not None else 1.0}
    if needs.memory is not None:
        resources["memory"] = needs.memory
    labels = {ACTION_LABEL: digests.text(loaded.digest), INSTANCE_LABEL: loaded.instance}
    if action.do_not_cache:
        labels[NO_CACHE_LABEL] = "1"
    try:
        return JobSpec(
            command=list(command.arguments),
            name=f"action {loaded.digest.hash[:16]}",
            env=env,
            tags=needs.tags,
            resources=resources,
            timeout=min(timeout, MAX_TIMEOUT_S),
            labels=labels,
            image=needs.image,
            network=needs.network,
            files=files,
            outputs=outputs,
            outputs_mode="action",
            workdir=command.working_directory.strip("/") or None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"the action cannot run as a job: {where}: {first['msg']}") from None


def _output_patterns(command: re_pb2.Command) -> list[str]:
    """The command's output paths, as literal patterns (`*` or `?` in a name is just a
    character); past the job's limit, the folders they are in (the ActionResult picks
    the named paths out of what was stored)."""
    paths = list(
        dict.fromkeys(
            p.strip("/")
            for p in [*command.output_paths, *command.output_files, *command.output_directories]
        )
    )
    if len(paths) > MAX_OUTPUTS:
        paths = list(dict.fromkeys(p.split("/", 1)[0] for p in paths))[:MAX_OUTPUTS]
    return [trees.literal(p) for p in paths]


Logs = Callable[[], Awaitable[tuple[bytes, bytes]]]


async def result(
    blobs: Blobs, command: re_pb2.Command, attempt: Attempt, logs: Logs
) -> re_pb2.ActionResult:
    """The ActionResult of an attempt that ran: exit code, outputs, stdout and stderr."""
    answer = re_pb2.ActionResult(exit_code=attempt.exit_code or 0)
    if attempt.outputs:
        tree = trees.from_bytes(await asyncio.to_thread(blobs.cas.read, attempt.outputs))
        files, folders, links = await asyncio.to_thread(
            directories.outputs, command, tree, blobs.put_now
        )
        answer.output_files.extend(files)
        answer.output_directories.extend(folders)
        answer.output_symlinks.extend(links)
        answer.output_file_symlinks.extend(
            link for link in links if link.path in set(command.output_files)
        )
        answer.output_directory_symlinks.extend(
            link for link in links if link.path in set(command.output_directories)
        )
    stdout, stderr = await logs()
    if stdout:
        answer.stdout_digest.CopyFrom(await blobs.put(stdout))
    if stderr:
        answer.stderr_digest.CopyFrom(await blobs.put(stderr))
    _timestamps(answer.execution_metadata, attempt)
    return answer


def _timestamps(meta: re_pb2.ExecutedActionMetadata, attempt: Attempt) -> None:
    meta.worker = attempt.worker
    meta.worker_start_timestamp.FromNanoseconds(int(attempt.assigned_at * 1e9))
    if attempt.started_at is not None:
        meta.execution_start_timestamp.FromNanoseconds(int(attempt.started_at * 1e9))
    if attempt.ended_at is not None:
        meta.execution_completed_timestamp.FromNanoseconds(int(attempt.ended_at * 1e9))
        meta.worker_completed_timestamp.FromNanoseconds(int(attempt.ended_at * 1e9))
