"""Pipelines run by a real scheduler and real workers: order, policies, retries, flaky
copies, dry runs, a scheduler restart, and `o11n run` as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from o11n.client import Client
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import log_text
from tests.servers import ServerProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]


def start(client: Client, text: str, **options: Any) -> int:
    body = {"pipeline": text, "file_name": "p.yml", **options}
    return int(client.request("POST", "/api/v1/pipelines", body=body)["id"])


def finished(client: Client, pipeline_id: int, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        record: dict[str, Any] = client.request("GET", f"/api/v1/pipelines/{pipeline_id}")
        return record if record["state"] != "running" else None

    def what() -> str:
        jobs = [(j.id, j.name, j.state, j.attempt) for j in client.jobs(limit=500)[0]]
        record = client.request("GET", f"/api/v1/pipelines/{pipeline_id}")
        return f"pipeline {pipeline_id} still running: {record} jobs {jobs}"

    return wait_for(done, timeout, what)


def states(record: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for stage in record["stages"] for s in stage["substages"]}


def job_ids(record: dict[str, Any], name: str) -> list[int]:
    sub = next(s for stage in record["stages"] for s in stage["substages"] if s["name"] == name)
    return [c["job_id"] for c in sub["copies"] if c["job_id"]]


def test_hello_runs_stage_by_stage(pool: ServerProcess) -> None:
    with Client(pool.url, pool.token) as client:
        record = finished(client, start(client, (ROOT / "examples" / "hello.yml").read_text()))
        assert record["state"] == "succeeded"
        assert set(states(record).values()) == {"succeeded"}
        build = client.get(job_ids(record, "compile")[0])
        for name in ("unit[shard=1]", "unit[shard=2]", "lint"):
            later = client.get(job_ids(record, name)[0])
            assert later.created_at >= (build.finished_at or 0)  # after the build stage ended
        assert log_text(client, job_ids(record, "unit[shard=2]")[0]) == "unit tests, shard 2\n"


POLICIES = """\
name: policies
stages:
  - name: first
    on_failure: continue
    substages:
      - {name: broken, run: "exit 3"}
      - {name: lint, run: "exit 1", allow_failure: true}
  - name: second
    substages:
      - {name: fails, run: "exit 2"}
  - name: third
    substages:
      - {name: never, run: "true"}
"""


def test_continue_abort_and_allow_failure(pool: ServerProcess) -> None:
    with Client(pool.url, pool.token) as client:
        record = finished(client, start(client, POLICIES))
    assert states(record) == {
        "broken": "failed",
        "lint": "failed",
        "fails": "failed",
        "never": "skipped",
    }
    assert [s["state"] for s in record["stages"]] == ["failed", "failed", "skipped"]
    assert record["state"] == "failed" and job_ids(record, "never") == []


def test_allow_failure_alone_does_not_fail_the_pipeline(pool: ServerProcess) -> None:
    text = (
        "name: ok\nstages:\n  - name: s\n    substages:\n"
        "      - {name: lint, run: 'exit 1', allow_failure: true}\n"
        "      - {name: unit, run: 'true'}\n"
    )
    with Client(pool.url, pool.token) as client:
        assert finished(client, start(client, text))["state"] == "succeeded"


def test_retries_follow_the_substage_policy(pool: ServerProcess) -> None:
    text = (
        "name: r\nstages:\n  - name: s\n    substages:\n      - name: shaky\n"
        "        run: 'test $O11N_ATTEMPT -ge 2'\n        retry: {max: 2, when: [failure]}\n"
    )
    with Client(pool.url, pool.token) as client:
        record = finished(client, start(client, text))
        job = client.get(job_ids(record, "shaky")[0])
    assert record["state"] == "succeeded"
    assert [a.outcome for a in job.attempts] == ["failure", "succeeded"]


def test_flaky_copies_first_success_wins(pool: ServerProcess) -> None:
    # copy 0 is slow, copy 1 succeeds at once: the slow one is cancelled
    text = (
        "name: f\nstages:\n  - name: s\n    substages:\n      - name: flaky\n"
        "        run: 'if [ $((O11N_JOB_ID % 2)) -eq 1 ]; then sleep 60; fi'\n"
        "        flaky: {copies: 2}\n"
    )
    with Client(pool.url, pool.token) as client:
        record = finished(client, start(client, text), timeout=30)
        copies = next(s for s in record["stages"][0]["substages"])["copies"]
        jobs = {c["copy"]: client.get(c["job_id"]).state for c in copies}
    assert record["state"] == "succeeded"
    assert sorted(jobs.values()) == ["cancelled", "succeeded"]


def test_flaky_fails_only_when_every_copy_fails(pool: ServerProcess) -> None:
    text = (
        "name: f\nstages:\n  - name: s\n    substages:\n      - name: flaky\n"
        "        run: 'exit 1'\n        flaky: {copies: 2}\n"
    )
    with Client(pool.url, pool.token) as client:
        record = finished(client, start(client, text))
    assert record["state"] == "failed" and len(job_ids(record, "flaky")) == 2


def test_dry_run_runs_nothing_and_applies_the_policies(pool: ServerProcess) -> None:
    with Client(pool.url, pool.token) as client:
        ok = finished(client, start(client, POLICIES, dry_run=True))
        assert ok["state"] == "succeeded" and ok["dry_run"] is True
        fake = {"O11N_FAKE_BROKEN_RC": 3, "O11N_FAKE_FAILS_RC": 2}
        bad = finished(client, start(client, POLICIES, dry_run=True, fake_exit_codes=fake))
        jobs, _ = client.jobs()
    assert states(bad) == {
        "broken": "failed",
        "lint": "succeeded",
        "fails": "failed",
        "never": "skipped",
    }
    assert jobs == []  # nothing ran


def test_a_pipeline_survives_a_scheduler_kill(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "w1", cpus=2)
    text = (
        "name: long\nstages:\n  - name: one\n    substages:\n"
        "      - {name: slow, run: 'sleep 2'}\n  - name: two\n    substages:\n"
        "      - {name: after, run: 'echo done'}\n"
    )
    with Client(server.url, server.token, retries=100) as client:
        pipeline_id = start(client, text)
        wait_for(lambda: client.jobs(states=["running"])[0], 30, "the slow job never ran")
        server.kill()
        server.start()
        record = finished(client, pipeline_id)
        assert record["state"] == "succeeded"
        assert len(job_ids(record, "after")) == 1 and len(client.jobs()[0]) == 2


def test_bad_pipelines_get_a_400_with_line_and_column(pool: ServerProcess) -> None:
    with Client(pool.url, pool.token) as client, pytest.raises(Exception, match=r"p\.yml:3:"):
        start(client, "name: x\nstages:\n  - name: a\n")


def o11n_run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, cache: Path | None = None
) -> Any:
    """`o11n run` as a user types it; its local scheduler keeps its data under `cache`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("O11N_")}
    if cache is not None:
        base["XDG_CACHE_HOME"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "o11n", "run", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=180,
    )


def test_o11n_run_starts_its_own_scheduler(tmp_path: Path) -> None:
    done = o11n_run("examples/hello.yml", "--workers", "2", cache=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pipeline 1 succeeded" in done.stdout
    assert done.stdout.count("succeeded") >= 5  # four substages and the pipeline
    failing = tmp_path / "fail.yml"
    failing.write_text(
        "name: f\nstages:\n  - name: a\n    substages:\n"
        "      - {name: boom, run: 'echo about to fail; exit 4'}\n"
    )
    failed = o11n_run(str(failing), "--workers", "1", cache=tmp_path)
    assert failed.returncode == 1
    assert "about to fail" in failed.stdout and "pipeline 2 failed" in failed.stdout


def test_o11n_run_against_a_server_with_json(pool: ServerProcess) -> None:
    env = {"O11N_SERVER": pool.url, "O11N_TOKEN": pool.token, "O11N_FAKE_COMPILE_RC": "1"}
    done = o11n_run("examples/hello.yml", "--dry-run", "--json", env=env)
    assert done.returncode == 1
    import json

    record = json.loads(done.stdout)
    assert record["dry_run"] and states(record)["compile"] == "failed"


def test_o11n_run_refuses_a_bad_file_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nstages:\n  - name: a\n    substages:\n      - {name: b}\n")
    done = o11n_run(str(bad))
    assert done.returncode == 2 and done.stderr.startswith(f"o11n: error: {bad}:5:")


def test_cancel_list_and_show_through_the_cli(pool: ServerProcess) -> None:
    from tests.servers import run_cli

    text = (
        "name: slow\nstages:\n  - name: s\n    substages:\n      - {name: nap, run: 'sleep 60'}\n"
    )
    with Client(pool.url, pool.token) as client:
        pipeline_id = start(client, text)
        wait_for(lambda: client.jobs(states=["running"])[0], 30, "the nap never started")
        cancelled = run_cli(pool.url, pool.token, "pipeline", "cancel", str(pipeline_id))
        assert cancelled.stdout.strip() == f"pipeline {pipeline_id} cancelled", cancelled.stderr
        record = finished(client, pipeline_id)
        assert record["state"] == "cancelled"
        assert client.get(job_ids(record, "nap")[0]).state == "cancelled"
    listed = run_cli(pool.url, pool.token, "pipeline", "list")
    assert listed.stdout.splitlines()[1].split()[:4] == [
        str(pipeline_id),
        "slow",
        "default",
        "cancelled",
    ]
    shown = run_cli(pool.url, pool.token, "pipeline", "show", str(pipeline_id))
    assert "nap" in shown.stdout and "cancelled" in shown.stdout


def test_watch_a_pipeline_over_websocket(pool: ServerProcess) -> None:
    import json

    from websockets.sync.client import connect

    text = (
        "name: w\nstages:\n  - name: one\n    substages:\n      - {name: a, run: sleep 1}\n"
        "  - name: two\n    substages:\n      - {name: b, run: 'true'}\n"
    )
    with Client(pool.url, pool.token) as client:
        pipeline_id = start(client, text)
    url = pool.url.replace("http", "ws") + f"/api/v1/pipelines/{pipeline_id}/watch"
    with connect(url, additional_headers={"Authorization": f"Bearer {pool.token}"}) as ws:
        messages = [json.loads(m) for m in ws]
    assert messages[-1] == {"type": "end", "state": "succeeded"}
    seen = [states(m) for m in messages if m["type"] == "pipeline"]
    assert seen[0]["b"] == "pending" and seen[-1] == {"a": "succeeded", "b": "succeeded"}
    assert len(seen) >= 2  # it streamed changes, not only the end


def test_watching_another_tenants_pipeline_is_refused(pool: ServerProcess) -> None:
    import json

    from websockets.sync.client import connect

    with Client(pool.url, pool.token) as client:
        pipeline_id = start(
            client,
            "name: x\nstages:\n  - name: a\n    substages:\n      - {name: b, run: 'true'}\n",
        )
        bob = client.create_tenant("bob")["token"]
    url = pool.url.replace("http", "ws") + f"/api/v1/pipelines/{pipeline_id}/watch"
    with connect(url, additional_headers={"Authorization": f"Bearer {bob}"}) as ws:
        first = json.loads(ws.recv(10))
    assert first["type"] == "error" and "no pipeline" in first["message"]
