"""The REAPI clients the e2e tests and benchmarks drive, proven without o11n.

Nothing here is skipped: without Bazel 2.1.0, Bazel 4.2.3 (with its JDK) and bgd these
tests fail (`.ci/install-reapi-clients` installs them). About 30 s on 2 cores.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import bazel_tools
from tests.e2e.bazel_tools import (
    LOCAL_FLAGS,
    Bazel,
    BazelClient,
    Workspace,
    bazel_4,
    bazel_21,
    bgd_execute,
    decode_bgd_response,
    find_bgd,
    parse_process_summary,
    remote_flags,
    write_workspace,
)
from tests.servers import free_port

# What bgd 0.4.4 printed for `command --output-file=out.txt EMPTY_DIR -- /bin/sh -c
# 'echo o11n > out.txt; exit 3'`: the ExecuteResponse is raw Any bytes, and bgd exited 0.
BGD_OUTPUT = r"""Sent command=[hash: "604959ffce70d60c6485f283440266c23553ed559910939726cfa56f2e9b3fe2"
size_bytes: 51
]
Sent input=[hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
]
Sent action=[hash: "0aee57535c9bcc8d30e00bd113c3c34b431146b7173d746dc37b140bf2698c42"
size_bytes: 142
]
name: "op-0aee57535c9b"
done: true
response {
  type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse"
  value: "\n\333\001\022O\n\007out.txt\022D\n@396c76695559272369c09d59249168125bab34c15b2aed7eb8f54da465ec549c\020\005 \0032B\n@e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855BB\n@e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}

Response status code:
"""  # noqa: E501  (bgd's own lines, as printed; the last one lost its trailing space)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """Three independent genrules, one chained on g0, one reading a source file."""
    return write_workspace(tmp_path / "ws", 3)


def start_client(bazel: Bazel, workspace: Workspace, tmp_path: Path) -> BazelClient:
    return BazelClient(bazel, workspace.root, tmp_path / f"bazel-{bazel.version}", max_idle_secs=60)


@pytest.fixture
def bazel21_client(workspace: Workspace, tmp_path: Path) -> Iterator[BazelClient]:
    with start_client(bazel_21(), workspace, tmp_path) as client:
        yield client


@pytest.fixture
def bazel4_client(workspace: Workspace, tmp_path: Path) -> Iterator[BazelClient]:
    with start_client(bazel_4(), workspace, tmp_path) as client:
        yield client


def assert_outputs(client: BazelClient, workspace: Workspace) -> None:
    out = client.bazel_bin()
    assert {name: (out / name).read_text() for name in workspace.expected} == workspace.expected


def test_process_summaries_of_both_versions() -> None:
    bazel21 = parse_process_summary("INFO: Elapsed time: 0.7s\nINFO: 3 processes: 3 remote.\n")
    assert (bazel21.total, bazel21.remote, bazel21.remote_cache_hits, bazel21.local) == (3, 3, 0, 0)
    hits = parse_process_summary("INFO: 4 processes: 3 remote cache hit, 1 internal.")
    assert (hits.total, hits.remote_cache_hits, hits.remote, hits.local) == (4, 3, 0, 0)
    assert hits.counts == {"remote cache hit": 3, "internal": 1}
    mixed = parse_process_summary("INFO: 7 processes: 2 remote cache hit, 1 internal, 4 remote.")
    assert (mixed.remote_cache_hits, mixed.remote) == (2, 4)
    sandboxed = parse_process_summary("INFO: 6 processes: 1 internal, 5 linux-sandbox.")
    assert sandboxed.local == 5
    assert parse_process_summary("INFO: 1 process: 1 internal.").counts == {"internal": 1}
    assert parse_process_summary("INFO: 0 processes.\n").total == 0
    two = "INFO: 5 processes: 5 local.\n...\nINFO: 5 processes: 5 remote cache hit.\n"
    assert parse_process_summary(two).remote_cache_hits == 5
    with pytest.raises(ValueError):
        parse_process_summary("INFO: Build completed successfully, 4 total actions\n")


def test_the_workspace_names_every_output(tmp_path: Path) -> None:
    plain = write_workspace(tmp_path / "plain", 2)
    assert plain.expected == {
        "g0.txt": "0\n",
        "g1.txt": "1\n",
        "chained.txt": "0\nchained\n",
        "from_source.txt": "O11N SOURCE\n",
    }
    assert plain.targets == ["//:g0", "//:g1", "//:chained", "//:from_source"]
    salted = write_workspace(tmp_path / "salted", 2, chained=False, from_source=False, salt="s1")
    assert salted.expected == {"g0.txt": "0 s1\n", "g1.txt": "1 s1\n"}
    assert "s1" in (salted.root / "BUILD").read_text()


def test_remote_flags() -> None:
    flags = remote_flags(
        5051, instance_name="main", properties={"OSFamily": "linux", "pool": "a"}, jobs=50
    )
    assert flags == [
        "--remote_executor=grpc://127.0.0.1:5051",
        "--remote_timeout=60",
        "--remote_instance_name=main",
        "--remote_default_exec_properties=OSFamily=linux",
        "--remote_default_exec_properties=pool=a",
        "--jobs=50",
    ]


def test_a_missing_client_names_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bazel_tools, "BAZEL_21_PATH", tmp_path / "bazel-2.1")
    monkeypatch.setattr(bazel_tools, "BGD_PATH", tmp_path / "bgd")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(bazel_tools.ToolMissing, match="install-reapi-clients"):
        bazel_21()
    with pytest.raises(bazel_tools.ToolMissing, match="install-reapi-clients"):
        find_bgd()


@pytest.mark.timeout(300)
def test_bazel_21_builds_locally_cleans_rebuilds_and_shuts_down(
    workspace: Workspace, tmp_path: Path
) -> None:
    with start_client(bazel_21(), workspace, tmp_path) as client:
        version = subprocess.run(
            [str(client.bazel.binary), "--version"], capture_output=True, text=True
        )
        assert version.stdout.strip() == "bazel 2.1.0"

        first = client.build()

        assert first.returncode == 0, first.stderr[-3000:]
        summary = parse_process_summary(first.stderr)
        assert (summary.total, summary.local, summary.remote) == (5, 5, 0)
        assert_outputs(client, workspace)

        assert client.clean().returncode == 0
        assert not (client.bazel_bin() / "g0.txt").exists()
        again = client.build(*LOCAL_FLAGS)
        assert again.returncode == 0, again.stderr[-3000:]
        assert parse_process_summary(again.stderr).counts == {"local": 5}
        assert_outputs(client, workspace)
        pid = int(client.info("server_pid"))
        assert client.server_rss_bytes() > 50 << 20  # a JVM

    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "bazel shutdown left the server running"


@pytest.mark.timeout(300)
def test_bazel_4_builds_locally(bazel4_client: BazelClient, workspace: Workspace) -> None:
    result = bazel4_client.build(*LOCAL_FLAGS)

    assert result.returncode == 0, result.stderr[-3000:]
    assert parse_process_summary(result.stderr).counts == {"internal": 1, "local": 5}
    assert_outputs(bazel4_client, workspace)


def test_a_broken_build_fails(bazel21_client: BazelClient, workspace: Workspace) -> None:
    (workspace.root / "BUILD").write_text(
        'genrule(name = "bad", outs = ["bad.txt"], cmd = "exit 7")\n'
    )

    result = bazel21_client.build(*LOCAL_FLAGS)

    assert result.returncode != 0
    assert "bad.txt" in result.stderr or "//:bad" in result.stderr


def test_bgd_has_the_options_the_helper_passes() -> None:
    group = subprocess.run([str(find_bgd()), "execute", "--help"], capture_output=True, text=True)
    assert group.returncode == 0, group.stderr
    assert "--remote TEXT" in group.stdout
    assert "--instance-name TEXT" in group.stdout
    command = subprocess.run(
        [str(find_bgd()), "execute", "command", "--help"], capture_output=True, text=True
    )
    assert command.returncode == 0, command.stderr
    for option in ("--output-file", "--output-directory", "--platform-property", "-c,"):
        assert option in command.stdout


def test_bgd_output_decodes_with_bgds_own_protos() -> None:
    response = decode_bgd_response(BGD_OUTPUT)

    assert response is not None
    assert response["name"] == "op-0aee57535c9b"
    assert response["done"] is True
    assert response["exit_code"] == 3
    assert response["status"] == [0, ""]
    assert response["cached_result"] is False
    assert response["output_files"] == {"out.txt": hashlib.sha256(b"o11n\n").hexdigest()}
    assert decode_bgd_response("Error: Uploading action: refused\n") is None


def test_bgd_reports_an_unreachable_server(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()

    run = bgd_execute(
        f"http://127.0.0.1:{free_port()}",
        tmp_path / "in",
        ["/bin/true"],
        output_directory=tmp_path / "out",
        timeout=60,
    )

    assert run.process.returncode != 0
    assert run.response is None
    assert "Uploading action" in run.process.stderr
