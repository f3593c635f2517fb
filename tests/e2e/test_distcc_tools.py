"""The distcc environment the distcc e2e test stands on: real daemons, a real build.

Nothing here is skipped: without distcc, gcc, make, dpkg-dev and a reachable Debian
mirror these tests fail (.ci/install-distcc installs the tools). About 20 s on 2 cores.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.distcc_farm import (
    SAMPLE_STATS,
    Distccd,
    build_with_distcc,
    clear_backoff,
    copy_source,
    distcc_log,
    fetch_stats,
    parse_distcc_stats,
    remote_compiles,
)
from tests.servers import free_port, wait_for

StartDistccd = Callable[..., Distccd]


@pytest.fixture
def start_distccd(tmp_path: Path) -> Iterator[StartDistccd]:
    """Start distccds on loopback aliases 127.0.0.N; all are stopped afterwards."""
    started: list[Distccd] = []

    def start(address: str, allow: str = "127.0.0.0/8") -> Distccd:
        log = tmp_path / f"distccd-{address}.log"
        daemon = Distccd(address, free_port(), free_port(), allow=allow, log=log)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


def test_parse_stats_keeps_numbers_and_strings() -> None:
    stats = parse_distcc_stats(SAMPLE_STATS)
    assert stats["dcc_compile_ok"] == 12.0
    assert stats["dcc_longest_job_time_msecs"] == -1.0
    assert stats["dcc_load1"] == 1.67
    assert stats["dcc_longest_job"] == "lapi.c"
    assert stats["dcc_free_space"] == "80971 MB"
    assert "argv" not in stats
    with pytest.raises(ValueError):
        parse_distcc_stats("argv /distccd\n")


def test_lua_builds_on_the_farm(
    start_distccd: StartDistccd, lua_cache: Path, tmp_path: Path
) -> None:
    farm = [start_distccd(f"127.0.0.{n}") for n in (2, 3, 4)]
    assert all(daemon.stats()["dcc_compile_ok"] == 0 for daemon in farm)
    src = copy_source(lua_cache, tmp_path / "lua")
    hosts = " ".join(f"{daemon.host}/2" for daemon in farm)

    result = build_with_distcc(src, hosts, tmp_path / "distcc", jobs=6)

    log = distcc_log(tmp_path / "distcc")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr + log.read_text()[-2000:]
    lua = str(src / "src" / "lua")
    version = subprocess.run([lua, "-v"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Lua 5.4")
    script = tmp_path / "squares.lua"
    script.write_text(
        "local t = {} for i = 1, 5 do t[#t + 1] = i * i end print(table.concat(t, ','))"
    )
    run = subprocess.run([lua, str(script)], capture_output=True, text=True, check=True)
    assert run.stdout == "1,4,9,16,25\n"
    objects = list((src / "src").glob("*.o"))
    compiled = remote_compiles(tmp_path / "distcc")
    assert sum(compiled.values()) == len(objects) == len(list((src / "src").glob("*.c")))
    assert set(compiled) <= {daemon.host for daemon in farm}
    # Each daemon's counter reaches what the client sent it (children report to the parent).
    wait_for(
        lambda: all(d.stats()["dcc_compile_ok"] == compiled[d.host] for d in farm),
        timeout=10,
        what=lambda: f"{compiled} vs {[d.stats()['dcc_compile_ok'] for d in farm]}",
    )
    # Preprocessing and linking ran here: distcc logs them on localhost.
    text = log.read_text()
    assert "cpp lua.c on localhost completed ok" in text
    assert "exec on localhost: x86_64-linux-gnu-gcc -std=gnu99 -o lua " in text


def test_a_client_off_the_allow_list_gets_nothing(
    start_distccd: StartDistccd, lua_cache: Path, tmp_path: Path
) -> None:
    denied = start_distccd("127.0.0.5", allow="10.0.0.0/8")
    with pytest.raises(ConnectionError):
        fetch_stats(denied.address, denied.stats_port)
    src = copy_source(lua_cache, tmp_path / "lua")
    distcc_dir = tmp_path / "distcc"

    result = build_with_distcc(src, f"{denied.host}/2", distcc_dir, jobs=2)

    assert result.returncode != 0
    assert not list((src / "src").glob("*.o"))
    assert "failed to distribute and fallbacks are disabled" in distcc_log(distcc_dir).read_text()
    assert remote_compiles(distcc_dir) == {}
    assert clear_backoff(distcc_dir), "the failed host was not backed off"
    assert denied.log is not None
    assert "denied by access list" in denied.log.read_text()
