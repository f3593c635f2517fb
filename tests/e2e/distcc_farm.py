"""A real distcc farm on loopback aliases, building Debian's lua5.4 source.

Facts this module relies on (checked on Debian 12, distcc 3.4):

* `distccd --daemon --no-detach --log-stderr` stays in the foreground; started as root
  it drops to the `distccd` user by itself (no `--user` needed) and forks `--jobs`
  children (default: cores + 2) in its own process group; SIGTERM to the parent
  ends them all.
* Its `--stats` page on `--stats-port` (HTTP/1.0, text/plain) obeys the same
  `--allow` list as compiling: a client outside it sees the connection reset.
* The client preprocesses and links locally; only `-c` compiles go to the farm.
  With `DISTCC_LOG` set it writes `compile FILE on HOST completed ok` per remote
  compile, and sends its error messages there instead of to stderr.
* A failed host is backed off for 60 s via `$DISTCC_DIR/lock/backoff_*`; those files
  are cleared before each build. `DISTCC_BACKOFF_PERIOD=0` is never set, since
  with `DISTCC_FALLBACK=0` it can make the client retry forever.
* distccd only runs compilers that have a link in /usr/lib/distcc (the Debian
  package adds gcc, cc, x86_64-linux-gnu-gcc, ...); the client rewrites `gcc` to
  `x86_64-linux-gnu-gcc`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from o11n.scheduler.scrape import parse_distcc

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LUA_PACKAGE = "lua5.4"

_REMOTE_OK = re.compile(r"^distcc\[\d+\] compile \S+ on (\S+?) completed ok$", re.MULTILINE)


# A distccd stats page as distccd 3.4 on Debian 12 writes it (trimmed).
SAMPLE_STATS = """argv /distccd
<distccstats>
dcc_tcp_accept 12
dcc_compile_ok 12
dcc_longest_job lapi.c
dcc_longest_job_time_msecs -1
dcc_load1 1.67
dcc_max_RSS_name (python)
dcc_free_space 80971 MB
</distccstats>
"""


def codename() -> str:
    """The Debian release of this machine (`bookworm`), from /etc/os-release."""
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    return "bookworm"


def _apt_stanzas(etc: Path = Path("/etc/apt")) -> list[dict[str, str]]:
    """Each source apt itself reads: `*.list` one-liners and deb822 `*.sources` stanzas."""
    stanzas: list[dict[str, str]] = []
    lists = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in lists:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for block in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", block, re.MULTILINE))
                if fields:
                    stanzas.append({k.lower(): v for k, v in fields.items()})
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                options = re.search(r"\[([^]]*)\]", line)
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] in ("deb", "deb-src"):
                    stanza = {"types": words[0], "uris": words[1], "suites": words[2]}
                    for option in options.group(1).split() if options else []:
                        key, _, value = option.partition("=")
                        stanza[key.lower()] = value
                    stanzas.append(stanza)
    return stanzas


def debian_mirror(suite: str | None = None) -> tuple[str, str]:
    """(mirror URL, keyring) of the configured source serving `suite`, or deb.debian.org."""
    suite = suite or codename()
    for stanza in _apt_stanzas():
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if suite in stanza.get("suites", "").split():
            return stanza["uris"].split()[0], stanza.get("signed-by", DEFAULT_KEYRING)
    return DEFAULT_MIRROR, DEFAULT_KEYRING


def apt_options(state: Path) -> list[str]:
    """apt-get options that use only the private sources list and state under `state`.

    Writes `state/sources.list` (one `deb-src` line for this release's main component,
    signed by the mirror's keyring); /etc/apt and /var/lib/apt/lists stay untouched.
    """
    mirror, keyring = debian_mirror()
    for folder in ("lists/partial", "cache/archives/partial"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    sources = state / "sources.list"
    sources.write_text(f"deb-src [signed-by={keyring}] {mirror} {codename()} main\n")
    options = {
        "Dir::Etc::SourceList": sources,
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::State::Lists": state / "lists",
        "Dir::Cache": state / "cache",
    }
    if os.geteuid() == 0:
        # Else apt warns that `_apt` cannot write the download folder, then works as root.
        options["APT::Sandbox::User"] = "root"
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


def _run(args: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_apt_env())
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


def lua_source(cache: Path, package: str = LUA_PACKAGE) -> Path:
    """The unpacked upstream source tree of Debian's `package`, fetched once into `cache`.

    `apt-get update` on a private `deb-src` list, `apt-get source --download-only`,
    then `dpkg-source --skip-patches -x`: Debian's patches switch the build to libtool
    and a C++ copy of every object, so the upstream Makefile (`make linux`) is kept.
    Later calls (also from other processes: a lock serialises them) return the cached
    tree at once. Treat it as read-only; build in a copy (`copy_source`).
    """
    cache.mkdir(parents=True, exist_ok=True)
    tree = cache / package
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tree.is_dir():
            return tree
        options = apt_options(cache / "apt")
        _run(["apt-get", "-q", *options, "update"])
        downloads = cache / "downloads"
        shutil.rmtree(downloads, ignore_errors=True)
        downloads.mkdir()
        _run(["apt-get", "-q", *options, "source", "--download-only", package], cwd=downloads)
        (dsc,) = downloads.glob(f"{package}_*.dsc")
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
        _run(["dpkg-source", "--skip-patches", "-x", str(dsc), str(staging / "src")])
        (staging / "src").rename(tree)
        shutil.rmtree(staging)  # dpkg-source also left the orig tarball next to "src"
        shutil.rmtree(cache / "apt")  # 20 MB of indexes, needed no more
        return tree


def copy_source(cache: Path, dest: Path) -> Path:
    """A fresh, writable copy of the cached lua source (see `lua_source`) at `dest`."""
    shutil.copytree(lua_source(cache), dest, symlinks=True)
    return dest


def clear_backoff(distcc_dir: Path) -> list[Path]:
    """Delete the client's `lock/backoff_*` marks (a failed host is else shunned 60 s)."""
    removed = sorted((distcc_dir / "lock").glob("backoff_*"))
    for mark in removed:
        mark.unlink(missing_ok=True)
    return removed


def distcc_log(distcc_dir: Path) -> Path:
    """Where `build_with_distcc` has the distcc client log (DISTCC_LOG)."""
    return distcc_dir / "distcc.log"


def build_with_distcc(
    src: Path,
    hosts: str,
    distcc_dir: Path,
    jobs: int,
    *,
    target: str = "linux",
    cc: str = "distcc gcc -std=gnu99",
    timeout: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    """`make -C src -j<jobs> <target> CC=<cc>` with every compile sent to `hosts`.

    `hosts` is a DISTCC_HOSTS value such as "127.0.0.2:3632/2 127.0.0.3:3632/2"
    (HOST:PORT/LIMIT, optional ",lzo"). DISTCC_FALLBACK=0 makes a compile that cannot
    be distributed fail instead of running locally. Backoff marks and the previous
    log are cleared first, so `remote_compiles(distcc_dir)` counts this build only;
    distcc's own error messages are in that log, not in the result's stderr.
    Lua's `linux` target needs no readline; `-std=gnu99` is what its Makefile's CC has.
    """
    (distcc_dir / "lock").mkdir(parents=True, exist_ok=True)
    clear_backoff(distcc_dir)
    log = distcc_log(distcc_dir)
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTCC_")}
    env.update(
        DISTCC_HOSTS=hosts,
        DISTCC_DIR=str(distcc_dir),
        DISTCC_FALLBACK="0",
        DISTCC_LOG=str(log),
        LC_ALL="C",
    )
    return subprocess.run(
        ["make", "-C", str(src), f"-j{jobs}", target, f"CC={cc}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def remote_compiles(distcc_dir: Path) -> Counter[str]:
    """Remote compiles of the last `build_with_distcc`, per "IP:PORT", from distcc's log."""
    log = distcc_log(distcc_dir)
    text = log.read_text(errors="replace") if log.exists() else ""
    # Links are logged as "compile (null) on localhost completed ok": not remote.
    hosts = (spec.split("/", 1)[0] for spec in _REMOTE_OK.findall(text))
    return Counter(host for host in hosts if host != "localhost")


def parse_distcc_stats(text: str) -> dict[str, float | str]:
    """The `<distccstats>` block of a distccd stats page: numbers as float, else str
    (o11n's own parser; ValueError if the block is missing)."""
    samples, strings = parse_distcc(text)
    return {**{s.name: s.value for s in samples}, **strings}


def fetch_stats(address: str, port: int, timeout: float = 5.0) -> str:
    """The raw stats page of the distccd at address:port.

    Raises ConnectionError (in practice ConnectionResetError) when this client is not
    on the daemon's --allow list: it accepts the connection, then closes it unread.
    """
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=timeout) as page:
            return str(page.read().decode())
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionError):
            raise error.reason from error
        raise


def listening(address: str, port: int) -> bool:
    """Whether some socket listens on IPv4 address:port (read from /proc, no connection)."""
    (host,) = struct.unpack("<I", socket.inet_aton(address))
    local = f"{host:08X}:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(line.split()[1] == local and line.split()[3] == "0A" for line in lines)


@dataclass
class Distccd:
    """One `distccd --daemon --no-detach` on its own address, with stats on."""

    address: str
    port: int
    stats_port: int
    allow: str = "127.0.0.0/8"
    log: Path | None = None
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """This daemon as a DISTCC_HOSTS entry without a limit: "IP:PORT"."""
        return f"{self.address}:{self.port}"

    def start(self, timeout: float = 10.0) -> Distccd:
        """Start it (stderr to `log`, else discarded); return once both ports listen."""
        args = ["distccd", "--daemon", "--no-detach", "--log-stderr"]
        args += ["--listen", self.address, "--port", str(self.port)]
        args += ["--stats", "--stats-port", str(self.stats_port), "--allow", self.allow]
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(self.log.open("ab")) if self.log else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                [*args, *self.extra],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not (listening(self.address, self.port) and listening(self.address, self.stats_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                detail = self.log.read_text()[-2000:] if self.log else ""
                raise RuntimeError(f"distccd on {self.host} did not start: {detail}")
            time.sleep(0.05)
        return self

    def stats(self) -> dict[str, float | str]:
        """Its parsed stats page (see `parse_distcc_stats`)."""
        return parse_distcc_stats(fetch_stats(self.address, self.stats_port))

    def stop(self) -> None:
        """SIGTERM its process group (parent and compile children); SIGKILL after 10 s."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 10
            while _group_alive(self.proc.pid) and time.monotonic() < deadline:
                self.proc.poll()
                time.sleep(0.05)
            if not _group_alive(self.proc.pid):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _group_alive(pgid: int) -> bool:
    """Whether any process (other than a zombie) is left in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False
