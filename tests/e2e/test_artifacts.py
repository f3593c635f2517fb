"""Workspaces, artifacts and the step cache, through a real scheduler and real workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from o11n.client import Client
from tests.e2e.test_pipelines import finished, job_ids, o11n_run, start, states
from tests.servers import ServerProcess, run_cli

BUILD_AND_TEST = """
name: bt
stages:
  - name: build
    substages:
      - name: compile
        run: |
          mkdir -p build
          cat src/main.txt src/util.txt > build/app
          echo scratch > not-an-artifact
        artifacts: [build]
        cache: {inputs: ["src/**"]}
  - name: test
    substages:
      - name: unit
        run: |
          grep -q main build/app
          test ! -e not-an-artifact
          test "$(cat notes.md)" = notes
          echo tampered > src/main.txt
      - name: docs
        run: cat notes.md
        cache: {inputs: [notes.md]}
"""


def workspace(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return workspace(
        tmp_path / "ws",
        {
            "src/main.txt": "main\n",
            "src/util.txt": "util\n",
            "notes.md": "notes\n",
            ".gitignore": "*.log\n",
            "debug.log": "never uploaded\n",
        },
    )


def run(client: Client, text: str, ws: Path, **options: Any) -> dict[str, Any]:
    digest, _ = client.upload_tree(ws)
    return finished(client, start(client, text, workspace=digest, **options))


def substage(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for st in record["stages"] for s in st["substages"] if s["name"] == name)


def test_substages_start_in_the_workspace_with_the_artifacts_of_earlier_stages(
    pool: ServerProcess, ws: Path
) -> None:
    text = BUILD_AND_TEST + (
        "  - name: after\n    substages:\n"
        "      - name: fresh\n"
        '        run: test "$(cat src/main.txt)" = main && test ! -e debug.log\n'
    )
    with Client(pool.url, pool.token) as client:
        record = run(client, text, ws)
        assert record["state"] == "succeeded", record
        listed = client.request("GET", f"/api/v1/pipelines/{record['id']}/artifacts")
    assert [(a["substage"], a["path"], a["size"]) for a in listed["artifacts"]] == [
        ("compile", "build/app", len("main\nutil\n"))
    ]


def test_unchanged_files_are_not_uploaded_twice(pool: ServerProcess, ws: Path) -> None:
    with Client(pool.url, pool.token) as client:
        _, first = client.upload_tree(ws)
        _, second = client.upload_tree(ws)
        (ws / "src" / "util.txt").write_text("util 2\n")
        _, third = client.upload_tree(ws)
    assert (first.files, first.uploaded) == (4, 4)  # debug.log is ignored
    assert second.uploaded == 0 and second.uploaded_bytes == 0
    assert third.uploaded == 1 and third.uploaded_bytes == len("util 2\n")


def test_a_second_run_is_cached_and_runs_nothing(pool: ServerProcess, ws: Path) -> None:
    with Client(pool.url, pool.token) as client:
        first = run(client, BUILD_AND_TEST, ws)
        jobs_before = len(client.jobs(limit=500)[0])
        second = run(client, BUILD_AND_TEST, ws)
        assert len(client.jobs(limit=500)[0]) == jobs_before  # nothing ran
        assert second["state"] == "succeeded"
        assert states(second) == {"compile": "cached", "unit": "cached", "docs": "cached"}
        for name in ("compile", "unit", "docs"):
            assert substage(second, name)["cached_from"] == job_ids(first, name)[0]
        assert substage(second, "compile")["artifacts"] == substage(first, "compile")["artifacts"]
        arts = client.request("GET", f"/api/v1/pipelines/{second['id']}/artifacts")
        assert [a["path"] for a in arts["artifacts"]] == ["build/app"]

        forced = run(client, BUILD_AND_TEST, ws, no_cache=True)
        assert set(states(forced).values()) == {"succeeded"}


def test_the_cache_key_follows_inputs_and_received_artifacts(pool: ServerProcess, ws: Path) -> None:
    with Client(pool.url, pool.token) as client:
        run(client, BUILD_AND_TEST, ws)
        (ws / "extra.txt").write_text("new\n")  # an input of no one that names its inputs
        record = run(client, BUILD_AND_TEST, ws)
        assert states(record) == {"compile": "cached", "docs": "cached", "unit": "succeeded"}

        (ws / "src" / "util.txt").write_text("util changed\n")  # an input of compile
        record = run(client, BUILD_AND_TEST, ws)
        # docs' own input is unchanged, but the build/app it receives is not
        assert set(states(record).values()) == {"succeeded"}


def test_the_cache_is_per_tenant(pool: ServerProcess, ws: Path) -> None:
    with Client(pool.url, pool.token) as client:
        client.create_tenant("team-b")
        run(client, BUILD_AND_TEST, ws)
        other = run(client, BUILD_AND_TEST, ws, tenant="team-b")
    assert set(states(other).values()) == {"succeeded"}


def test_a_declared_artifact_that_was_not_made_fails_its_substage(
    pool: ServerProcess, ws: Path
) -> None:
    text = (
        "name: m\nstages:\n  - name: s\n    substages:\n"
        "      - {name: forgetful, run: 'true', artifacts: [dist/app.tar]}\n"
    )
    with Client(pool.url, pool.token) as client:
        record = run(client, text, ws)
        job = client.get(job_ids(record, "forgetful")[0])
    assert record["state"] == "failed"
    assert job.state == "error" and "dist/app.tar" in (job.reason or "")


def test_pipeline_artifacts_are_listed_and_downloaded_by_the_cli(
    pool: ServerProcess, ws: Path, tmp_path: Path
) -> None:
    with Client(pool.url, pool.token) as client:
        record = run(client, BUILD_AND_TEST, ws)
    listed = run_cli(pool.url, pool.token, "pipeline", "artifacts", str(record["id"]), "--json")
    assert [a["path"] for a in json.loads(listed.stdout)] == ["build/app"], listed.stderr
    out = tmp_path / "out"
    got = run_cli(
        pool.url, pool.token, "pipeline", "artifacts", str(record["id"]), "--download", str(out)
    )
    assert got.returncode == 0, got.stderr
    assert (out / "compile" / "build" / "app").read_text() == "main\nutil\n"
    assert "build/app" in got.stdout


def test_o11n_run_twice_reports_cached_substages(tmp_path: Path) -> None:
    folder = workspace(
        tmp_path / "project", {"pipeline.yml": BUILD_AND_TEST, "src/main.txt": "main\n"}
    )
    workspace(folder, {"src/util.txt": "util\n", "notes.md": "notes\n"})
    first = o11n_run("pipeline.yml", "--workers", "2", cwd=folder, cache=tmp_path / "cache")
    assert first.returncode == 0, first.stdout + first.stderr
    second = o11n_run("pipeline.yml", "--workers", "2", cwd=folder, cache=tmp_path / "cache")
    assert second.returncode == 0, second.stdout + second.stderr
    rows = [line.split() for line in second.stdout.splitlines()]
    cached = {row[1] for row in rows if len(row) > 2 and row[2] == "cached"}
    assert cached == {"compile", "unit", "docs"}, second.stdout
    assert "0 uploaded" in second.stdout
    forced = o11n_run("pipeline.yml", "--no-cache", "--json", cwd=folder, cache=tmp_path / "cache")
    assert set(states(json.loads(forced.stdout)).values()) == {"succeeded"}
