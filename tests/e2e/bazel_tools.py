"""Real REAPI v2 clients for the e2e tests and benchmarks: Bazel 2.1.0, Bazel 4.2.3, bgd.

`.ci/install-reapi-clients` installs them; the finders here raise `ToolMissing` naming it.
Facts the helpers rely on (checked on Debian 12, as root, offline but for the registries):

* Bazel 2.1.0 (npm's @bazel/bazel) is self-extracting with an embedded JDK 11. It speaks
  REAPI 2.0: the platform (`--remote_default_exec_properties`) goes on the Command only;
  outputs are listed in `Command.output_files`.
* Bazel 4.2.3 (Debian's bazel-bootstrap, /usr/bin/bazel-4) is not self-extracting: its
  install base is /usr/share/bazel, so with `--nosystem_rc` it needs `--install_base` and
  `--trust_install_base`, plus a JDK (`--server_javabase`, OpenJDK 17 here). It puts the
  platform on the Action as well as the Command; outputs still go in `output_files`.
* Both run a genrule as `/bin/bash -c "source external/bazel_tools/tools/genrule/
  genrule-setup.sh; CMD"` from the input root, and look the action up with
  GetActionResult before they call Execute. A clean build that finds every action cached
  reports `N remote cache hit`. `--incompatible_strict_action_env` keeps the client's PATH
  out of the Command, so action digests are the same on every machine and run.
* Both upload every blob with ByteStream Write (`{instance}/uploads/{uuid}/blobs/{hash}/
  {size}`, after FindMissingBlobs) and download with ByteStream Read; neither calls
  BatchUpdateBlobs or BatchReadBlobs.
* Bazel 2.1 does not rerun actions that it built locally when remote flags are added (it
  reports "0 processes"); Bazel 4 does. Clean, or use another output root, between a
  local and a remote build.
* Genrule-only workspaces build offline: no external repository is fetched. linux-sandbox
  works here as root; `LOCAL_FLAGS` (`--spawn_strategy=local`) only makes it cheaper.
* Every invocation of one output root must pass the same startup options, or Bazel kills
  and restarts its server. A server exits by itself after `max_idle_secs` idle seconds.
* bgd 0.4.4: `bgd execute --remote=URL --instance-name=X command [options] INPUT_ROOT --
  ARGV...`. It uploads INPUT_ROOT, sends an Action with the platform on both Action and
  Command, lists outputs in `Command.output_paths`, sets `do_not_cache` and
  `skip_cache_lookup` unless `-c`, prints each Operation in protobuf text format (the
  ExecuteResponse as raw Any bytes) and exits 0 even when the command fails: the helper
  decodes the last Operation with bgd's own protos (in its venv).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

INSTALL_HINT = "run `bash .ci/install-reapi-clients` as root"
BAZEL_21_PATH = Path("/usr/local/bin/bazel-2.1")
BAZEL_4_PATH = Path("/usr/bin/bazel-4")
BAZEL_4_INSTALL_BASE = Path("/usr/share/bazel")
BGD_PATH = Path("/usr/local/bin/bgd")
JDK_CANDIDATES = (Path("/usr/lib/jvm/java-17-openjdk-amd64"), Path("/usr/lib/jvm/default-java"))

# Read no bazelrc: only what a test passes counts.
NO_RC = ("--nohome_rc", "--nosystem_rc", "--noworkspace_rc")
# Every build: no progress lines; no PATH from the caller's environment in the Command.
BUILD_FLAGS = ("--noshow_progress", "--incompatible_strict_action_env")
# A local build without the sandbox: the cheapest baseline.
LOCAL_FLAGS = ("--spawn_strategy=local",)
ALL_TARGETS = ("//:all",)  # not //...: that would walk the bazel-* convenience symlinks

_SUMMARY = re.compile(r"^INFO: (\d+) process(?:es)?(?:: (.*?))?\.?\s*$", re.MULTILINE)
_LOCAL_NAMES = frozenset(
    {"local", "linux-sandbox", "processwrapper-sandbox", "sandbox", "worker", "docker"}
)


class ToolMissing(RuntimeError):
    """A client binary (or the JDK Bazel 4 runs on) is not installed."""


@dataclass(frozen=True)
class Bazel:
    """One Bazel release: its binary and the startup options it always needs."""

    binary: Path
    version: str
    startup_options: tuple[str, ...] = ()


def _require(path: Path, what: str) -> Path:
    """`path` when it is an executable file, else the PATH's `path.name`; or ToolMissing."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which(path.name)
    if found:
        return Path(found)
    raise ToolMissing(f"{what} is not installed (no {path}): {INSTALL_HINT}")


def find_jdk() -> Path:
    """The JDK home Bazel 4.2.3 runs on: OpenJDK 17 (Debian's default-jdk on bookworm)."""
    for home in JDK_CANDIDATES:
        if (home / "bin" / "java").is_file():
            return home
    raise ToolMissing(f"no JDK 17 in {', '.join(map(str, JDK_CANDIDATES))}: {INSTALL_HINT}")


def bazel_21() -> Bazel:
    """Bazel 2.1.0 from npm (REAPI 2.0)."""
    return Bazel(_require(BAZEL_21_PATH, "Bazel 2.1.0"), "2.1.0")


def bazel_4() -> Bazel:
    """Bazel 4.2.3, Debian's bazel-bootstrap (REAPI 2.2: the platform on the Action too)."""
    binary = _require(BAZEL_4_PATH, "Bazel 4.2.3 (bazel-bootstrap)")
    if not (BAZEL_4_INSTALL_BASE / "A-server.jar").is_file():
        raise ToolMissing(f"no Bazel 4 install base at {BAZEL_4_INSTALL_BASE}: {INSTALL_HINT}")
    startup = (
        f"--install_base={BAZEL_4_INSTALL_BASE}",
        "--trust_install_base",
        f"--server_javabase={find_jdk()}",
    )
    return Bazel(binary, "4.2.3", startup)


def find_bgd() -> Path:
    """BuildGrid's `bgd` (0.4.4, in its own venv)."""
    return _require(BGD_PATH, "BuildGrid's bgd")


@dataclass(frozen=True)
class Workspace:
    """A genrule-only workspace: its root and each output (under bazel-bin) with its text."""

    root: Path
    expected: Mapping[str, str]

    @property
    def targets(self) -> list[str]:
        """The labels of every genrule, one per output."""
        return [f"//:{name.removesuffix('.txt')}" for name in self.expected]


def write_workspace(
    root: Path,
    count: int,
    *,
    chained: bool = True,
    from_source: bool = True,
    salt: str = "",
    sleep_seconds: float = 0.0,
) -> Workspace:
    """Write WORKSPACE and BUILD for `count` independent genrules `g0`... (`echo i > $@`),
    plus `chained` (reads g0's output) and `from_source` (reads the source `input.txt`).

    A different `salt` changes every command, so no action is found cached from an earlier
    run; `sleep_seconds` gives each independent genrule that much work.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "WORKSPACE").write_text('workspace(name = "reapi_e2e")\n')
    suffix = f" {salt}" if salt else ""
    pause = f"sleep {sleep_seconds:g}; " if sleep_seconds else ""
    rules: list[str] = []
    expected: dict[str, str] = {}
    for i in range(count):
        rules.append(
            f'genrule(name = "g{i}", outs = ["g{i}.txt"], cmd = "{pause}echo {i}{suffix} > $@")'
        )
        expected[f"g{i}.txt"] = f"{i}{suffix}\n"
    if chained and count:
        rules.append(
            'genrule(name = "chained", srcs = [":g0"], outs = ["chained.txt"],'
            ' cmd = "cat $(location :g0) > $@ && echo chained >> $@")'
        )
        expected["chained.txt"] = expected["g0.txt"] + "chained\n"
    if from_source:
        (root / "input.txt").write_text(f"o11n source{suffix}\n")
        rules.append(
            'genrule(name = "from_source", srcs = ["input.txt"], outs = ["from_source.txt"],'
            ' cmd = "tr a-z A-Z < $< > $@")'
        )
        expected["from_source.txt"] = f"o11n source{suffix}\n".upper()
    (root / "BUILD").write_text("\n".join(rules) + "\n")
    return Workspace(root, expected)


def remote_flags(
    port: int,
    *,
    host: str = "127.0.0.1",
    instance_name: str = "",
    properties: Mapping[str, str] | None = None,
    timeout_seconds: int = 60,
    jobs: int | None = None,
) -> list[str]:
    """The build flags for remote execution on `grpc://host:port` (both Bazel versions).

    `properties` become `--remote_default_exec_properties=k=v` (the platform). Local
    fallback stays off (Bazel's default), so a failed remote action fails the build.
    """
    flags = [f"--remote_executor=grpc://{host}:{port}", f"--remote_timeout={timeout_seconds}"]
    if instance_name:
        flags.append(f"--remote_instance_name={instance_name}")
    for name, value in (properties or {}).items():
        flags.append(f"--remote_default_exec_properties={name}={value}")
    if jobs is not None:
        flags.append(f"--jobs={jobs}")
    return flags


class BazelClient:
    """One Bazel server for one workspace, under its own output root; a context manager
    that shuts the server down on exit."""

    def __init__(
        self,
        bazel: Bazel,
        workspace: Path,
        output_user_root: Path,
        max_idle_secs: int = 300,
    ) -> None:
        self.bazel = bazel
        self.workspace = workspace
        self.output_user_root = output_user_root
        self.startup = [
            *NO_RC,
            *bazel.startup_options,
            f"--output_user_root={output_user_root}",
            f"--max_idle_secs={max_idle_secs}",
        ]

    def run(
        self, command: str, *args: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """`bazel STARTUP COMMAND ARGS` in the workspace; the result, whatever its exit code."""
        env = {k: v for k, v in os.environ.items() if k != "TEST_TMPDIR"}  # it moves the root
        return subprocess.run(
            [str(self.bazel.binary), *self.startup, command, *args],
            cwd=self.workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def build(
        self, *flags: str, targets: Sequence[str] = ALL_TARGETS, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """`bazel build` of `targets` with `BUILD_FLAGS` and then `flags`."""
        return self.run("build", *BUILD_FLAGS, *flags, "--", *targets, timeout=timeout)

    def clean(self) -> subprocess.CompletedProcess[str]:
        """`bazel clean`: outputs and the local action cache go; the server stays."""
        return self.run("clean", timeout=120)

    def info(self, key: str) -> str:
        """One value of `bazel info` (`bazel-bin`, `server_pid`, ...)."""
        result = self.run("info", key, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"bazel info {key} failed: {result.stderr[-2000:]}")
        return result.stdout.strip()

    def bazel_bin(self) -> Path:
        """Where the genrules' outputs are."""
        return Path(self.info("bazel-bin"))

    def server_rss_bytes(self) -> int:
        """The resident memory of the running Bazel server (its JVM)."""
        status = Path(f"/proc/{self.info('server_pid')}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) * 1024

    def shutdown(self) -> None:
        """`bazel shutdown`; a server that does not go is killed by the pid it wrote."""
        if not self.output_user_root.exists():
            return
        try:
            if self.run("shutdown", timeout=60).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        for pid_file in self.output_user_root.glob("*/server/server.pid.txt"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)

    def __enter__(self) -> BazelClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


@dataclass(frozen=True)
class ProcessSummary:
    """Bazel's "INFO: N processes: X remote cache hit, Y remote, Z linux-sandbox." line."""

    total: int
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def remote(self) -> int:
        """Actions executed remotely (Execute ran them)."""
        return self.counts.get("remote", 0)

    @property
    def remote_cache_hits(self) -> int:
        """Actions whose result came from the remote cache."""
        return self.counts.get("remote cache hit", 0)

    @property
    def local(self) -> int:
        """Actions run on this machine, sandboxed or not (not Bazel 4's `internal` ones)."""
        return sum(n for name, n in self.counts.items() if name in _LOCAL_NAMES)


def parse_process_summary(output: str) -> ProcessSummary:
    """The last process summary in Bazel's output (2.1: "INFO: 3 processes: 3 remote.";
    4.2: "INFO: 4 processes: 3 remote cache hit, 1 internal."; "INFO: 1 process: ...";
    "INFO: 0 processes."). ValueError when there is none."""
    matches = list(_SUMMARY.finditer(output))
    if not matches:
        raise ValueError("no 'INFO: N processes' line in Bazel's output")
    total, parts = matches[-1].group(1), matches[-1].group(2) or ""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in parts.split(","))):
        number, _, name = part.partition(" ")
        counts[name] = counts.get(name, 0) + int(number)
    return ProcessSummary(int(total), counts)


@dataclass(frozen=True)
class BgdRun:
    """A finished `bgd execute command`: the process and its decoded ExecuteResponse
    (None when bgd printed no Operation, e.g. when the server could not be reached)."""

    process: subprocess.CompletedProcess[str]
    response: Mapping[str, Any] | None


def bgd_execute(
    remote: str,
    input_root: Path,
    argv: Sequence[str],
    *,
    output_directory: Path,
    instance_name: str = "",
    output_paths: Sequence[str] = (),
    platform: Mapping[str, str] | None = None,
    cache: bool = False,
    timeout: float = 120,
) -> BgdRun:
    """Run `argv` through `bgd execute` on `remote` (`http://127.0.0.1:PORT`) with
    `input_root` as the input tree; outputs are downloaded into `output_directory`.

    `cache` sends `-c`: the action may be cached and a cached result is accepted.
    """
    group = [f"--remote={remote}"]
    if instance_name:
        group.append(f"--instance-name={instance_name}")
    options = [f"--output-directory={output_directory}"]
    options += [f"--output-file={path}" for path in output_paths]
    for name, value in (platform or {}).items():
        options += ["--platform-property", name, value]
    if cache:
        options.append("--enable-action-cache")
    command = [str(find_bgd()), "execute", *group, "command", *options, str(input_root), "--"]
    process = subprocess.run(
        [*command, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    return BgdRun(process, decode_bgd_response(process.stdout))


def last_operation_text(stdout: str) -> str | None:
    """The last Operation that `bgd execute command` printed, in protobuf text format."""
    lines = stdout.splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("Response status")), None)
    lines = lines[:end]
    starts = [i for i, line in enumerate(lines) if line.startswith("name: ")]
    if not starts:
        return None
    return "\n".join(lines[starts[-1] :]) + "\n"


_DECODE = """
import json, sys
from google.protobuf import text_format
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as r
from buildgrid._protos.google.longrunning import operations_pb2
op = text_format.Parse(sys.stdin.read(), operations_pb2.Operation())
resp = r.ExecuteResponse()
op.response.Unpack(resp)
print(json.dumps({
    "name": op.name, "done": op.done,
    "error": [op.error.code, op.error.message] if op.HasField("error") else None,
    "status": [resp.status.code, resp.status.message],
    "cached_result": resp.cached_result, "message": resp.message,
    "exit_code": resp.result.exit_code,
    "output_files": {f.path: f.digest.hash for f in resp.result.output_files},
    "stdout_raw": resp.result.stdout_raw.decode(errors="replace"),
    "stdout_digest": [resp.result.stdout_digest.hash, resp.result.stdout_digest.size_bytes],
}))
"""


def decode_bgd_response(stdout: str) -> dict[str, Any] | None:
    """The final Operation of bgd's output as a dict: `exit_code`, `status` ([code,
    message]), `cached_result`, `output_files` (path: hash), ...; decoded by the Python of
    bgd's venv, whose protos match the bytes bgd printed. None when there is no Operation."""
    text = last_operation_text(stdout)
    if text is None:
        return None
    python = find_bgd().resolve().parent / "python"
    result = subprocess.run(
        [str(python), "-c", _DECODE], input=text, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ValueError(f"cannot decode bgd's Operation: {result.stderr[-2000:]}")
    decoded: dict[str, Any] = json.loads(result.stdout)
    return decoded
