"""The `o11n` command against a real scheduler process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.servers import ServerProcess, free_port


def o11n(
    server: ServerProcess | None,
    *args: str,
    token: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    env["O11N_SERVER"] = server.url if server else f"http://127.0.0.1:{free_port()}"
    env["O11N_TOKEN"] = token or (server.token if server else "x")
    return subprocess.run(
        [sys.executable, "-m", "o11n", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_submit_prints_only_the_id(server: ServerProcess) -> None:
    done = o11n(
        server,
        "submit",
        "--tag",
        "arch=x86_64",
        "--memory",
        "2G",
        "--priority",
        "5",
        "--timeout",
        "20m",
        "--retries",
        "2",
        "--label",
        "team=core",
        "--",
        "make",
        "-j4",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()
    shown = json.loads(o11n(server, "jobs", "show", done.stdout.strip(), "--json").stdout)
    assert shown["command"] == ["make", "-j4"] and shown["tags"] == {"arch": "x86_64"}
    assert shown["resources"]["memory"] == 2 * 2**30 and shown["priority"] == 5
    assert shown["timeout"] == 1200 and shown["retry"]["max_attempts"] == 3
    assert shown["labels"] == {"team": "core"}


def test_one_quoted_argument_is_a_script(server: ServerProcess) -> None:
    job_id = o11n(server, "submit", "--", "echo a && echo b").stdout.strip()
    shown = json.loads(o11n(server, "jobs", "show", job_id, "--json").stdout)
    assert shown["command"] == "echo a && echo b"


def test_list_show_cancel_events(server: ServerProcess) -> None:
    first = o11n(server, "submit", "--label", "n=1", "--", "true").stdout.strip()
    second = o11n(server, "submit", "--", "false").stdout.strip()
    table = o11n(server, "jobs", "list").stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "TENANT", "NAME", "STATE"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == [second, first]
    listed = json.loads(o11n(server, "jobs", "list", "--label", "n=1", "--json").stdout)
    assert [j["id"] for j in listed["jobs"]] == [int(first)]
    assert "queued" in o11n(server, "jobs", "show", first).stdout
    assert o11n(server, "jobs", "cancel", first).stdout.strip() == f"job {first} cancelled"
    events = json.loads(o11n(server, "jobs", "events", first, "--json").stdout)
    assert [e["state"] for e in events] == ["queued", "cancelled"]
    watched = o11n(server, "jobs", "watch", first, "--json")
    assert watched.returncode == 0 and '"cancelled"' in watched.stdout
    again = o11n(server, "jobs", "cancel", first)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "cannot become cancelled" in again.stderr


def test_tenants_and_workers(server: ServerProcess) -> None:
    token = o11n(server, "tenants", "create", "team-a", "--weight", "3").stdout.strip()
    assert token.startswith("o11n_ten_")
    listed = json.loads(o11n(server, "tenants", "list", "--json").stdout)
    assert {"team-a": 3.0}.items() <= {t["name"]: t["weight"] for t in listed}.items()
    job = o11n(server, "submit", "--", "true", token=token).stdout.strip()
    assert json.loads(o11n(server, "jobs", "show", job, "--json").stdout)["tenant"] == "team-a"
    refused = o11n(server, "tenants", "create", "other", token=token)
    assert refused.returncode == 2 and "may not" in refused.stderr
    assert o11n(server, "workers", "token").stdout.startswith("o11n_wrk_")
    assert o11n(server, "workers", "list").stdout.split()[:3] == ["WORKER", "STATE", "TAGS"]


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--memory", "lots", "--", "true"],
        ["submit", "--tag", "novalue", "--", "true"],
        ["submit", "--timeout", "soon", "--", "true"],
        ["submit", "--priority", "99999", "--", "true"],
        ["submit", "--bogus", "--", "true"],
        ["jobs", "show", "notanumber"],
        ["jobs", "show", "424242"],
        ["jobs", "list", "--state", "sleeping"],
        ["nosuchcommand"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(server: ServerProcess, args: list[str]) -> None:
    done = o11n(server, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("o11n: error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert json.loads(o11n(server, "jobs", "list", "--json").stdout)["jobs"] == []


def test_unreachable_server_is_one_line_and_exit_1() -> None:
    done = o11n(None, "jobs", "list")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "cannot reach the scheduler" in done.stderr


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "o11n", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    for command in ("server", "submit", "jobs", "tenants", "workers"):
        assert command in done.stdout


def test_pipeline_compile_from_a_file_and_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = o11n(
        None, "pipeline", "compile", str(root / "examples" / "hello.yml"), "--var", "GREETING=hey"
    )
    assert done.returncode == 0, done.stderr
    book = json.loads(done.stdout)
    assert book["build"]["substages"][0]["env"] == {"GREETING": "hey"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    env |= {
        "O11N_PIPELINE": (root / "examples" / "hello.yml").read_text(),
        "O11N_VAR_GREETING": "from-env",
    }
    from_env = subprocess.run(
        [sys.executable, "-m", "o11n", "pipeline", "compile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert json.loads(from_env.stdout)["test"]["substages"][0]["env"]["GREETING"] == "from-env"
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nstages:\n  - name: a\n    substages: []\n")
    refused = o11n(None, "pipeline", "compile", str(bad))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"o11n: error: {bad}:4:")
