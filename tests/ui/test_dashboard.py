"""The dashboard in a real browser: sign in, follow a pipeline, read a live log, cancel a
job, the pool's admin actions, and a tenant kept to its own jobs."""

from __future__ import annotations

import re
import sys
from typing import Any

import httpx

from o11n.client import Client
from tests.e2e.jobs import wait_final, wait_running
from tests.servers import ServerProcess, wait_for
from tests.ui.conftest import screenshot, sign_in

PIPELINE = """\
name: hello
stages:
  - name: build
    substages:
      - {name: compile, run: "sleep 2; echo built"}
  - name: test
    substages:
      - name: unit
        matrix: {shard: [1, 2]}
        run: "sleep 1; echo shard $shard"
      - {name: lint, run: "echo lint"}
"""
RED, GREEN, RESET = "\\033[31m", "\\033[1;32m", "\\033[0m"
FAILING = (
    f"printf '{GREEN}compiling{RESET} step 1\\n'; printf '{RED}error:{RESET} it broke\\n' >&2; "
    "sleep 2; echo 'last words'; exit 3"
)


def test_sign_in_with_a_bad_token_then_a_good_one(page: Any, pool: ServerProcess) -> None:
    page.goto(pool.url + "/")
    screenshot(page, "signin")
    page.get_by_label("API token").fill("o11n_adm_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="not valid").wait_for()
    sign_in(page, pool)
    assert page.locator("#who").inner_text() == "admin"
    assert page.evaluate("sessionStorage.getItem('o11n.token')") == pool.token
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API token").wait_for()
    assert page.evaluate("sessionStorage.getItem('o11n.token')") is None


def test_overview_counts_jobs_live(page: Any, pool: ServerProcess) -> None:
    with Client(pool.url, pool.token) as client:
        done = [client.submit({"command": ["true"], "name": f"quick {i}"}) for i in range(3)]
        for job_id in done:
            wait_final(client, job_id)
        sign_in(page, pool)
        page.locator('[data-counter="workers online"]').filter(has_text="2").wait_for()
        recent = page.get_by_role("table", name="Recent jobs")
        recent.get_by_text("quick 2").wait_for()
        blocked = client.submit({"command": ["true"], "tags": {"pool": "none"}, "name": "waits"})
        page.locator('[data-counter="queued"]').filter(has_text="1").wait_for()
        page.get_by_role("table", name="Queued jobs").get_by_text("waits").wait_for()
        bars = page.locator("svg.chart rect.bar-ok")
        wait_for(lambda: bars.count() >= 1, 40, "no succeeded bar in the chart")
        page.get_by_role("table", name="Tenants").get_by_text("default").wait_for()
        screenshot(page, "overview")
        client.cancel(blocked)
        page.locator('[data-counter="queued"]').filter(has_text="0").wait_for()


def test_a_pipeline_s_boxes_turn_green(page: Any, pool: ServerProcess) -> None:
    sign_in(page, pool)
    with Client(pool.url, pool.token) as client:
        body = {"pipeline": PIPELINE, "file_name": "hello.yml"}
        pipeline_id = int(client.request("POST", "/api/v1/pipelines", body=body)["id"])
    page.goto(f"{pool.url}/#/pipelines/{pipeline_id}")
    boxes = page.locator(".box")
    wait_for(lambda: boxes.count() == 4, 20, "the pipeline's 4 boxes")
    page.locator(".box.state-running, .box.state-queued").first.wait_for()
    page.locator(".box.state-succeeded").nth(3).wait_for(timeout=60_000)
    page.locator(".panel-head .badge.state-succeeded").wait_for()
    assert page.locator(".stage h2").all_inner_texts() == ["build", "test"]
    assert "attempt 1" in page.locator('[data-substage="compile"]').inner_text()
    screenshot(page, "pipeline")
    page.locator('[data-substage="unit[shard=2]"]').click()
    page.wait_for_url(re.compile(r"#/jobs/\d+$"))
    page.locator("#log").get_by_text("shard 2").wait_for()


def test_a_failing_job_s_live_log(page: Any, pool: ServerProcess) -> None:
    sign_in(page, pool)
    with Client(pool.url, pool.token) as client:
        job_id = client.submit({"command": FAILING, "name": "breaks", "tags": {"os": "linux"}})
        page.goto(f"{pool.url}/#/jobs/{job_id}")
        log = page.locator("#log")
        log.get_by_text("it broke").wait_for()
        assert client.get(job_id).state in ("running", "assigned")  # read while it runs
        assert log.locator(".ansi-fg2.ansi-bold").inner_text() == "compiling"
        assert log.locator(".stderr .ansi-fg1").inner_text() == "error:"
        assert "\x1b" not in log.inner_text()
        log.get_by_text("last words").wait_for()
        page.locator(".panel-head .badge.state-failed").wait_for()
        attempts = page.get_by_role("table", name="Attempts")
        attempts.get_by_role("cell", name="3", exact=True).wait_for()
        assert re.search(r"w[12]", attempts.inner_text())
        page.get_by_role("list", name="Events").get_by_text("failed").first.wait_for()
        assert "last words" in page.locator("pre.command").inner_text()
        screenshot(page, "job")
        assert wait_final(client, job_id).exit_code == 3


def test_cancel_a_running_job_from_its_page(page: Any, pool: ServerProcess) -> None:
    sign_in(page, pool)
    with Client(pool.url, pool.token) as client:
        job_id = client.submit({"command": "echo started; sleep 60", "name": "long"})
        wait_running(client, job_id)
        page.goto(f"{pool.url}/#/jobs/{job_id}")
        page.locator("#log").get_by_text("started").wait_for()
        assert page.get_by_role("button", name="Retry").is_disabled()
        page.get_by_role("button", name="Cancel").click()
        page.locator(".panel-head .badge.state-cancelled").wait_for()
        assert wait_final(client, job_id).state == "cancelled"
        page.get_by_role("button", name="Retry").click()
        page.wait_for_url(re.compile(rf"#/jobs/(?!{job_id}$)\d+$"))
        retried = int(page.url.rsplit("/", 1)[1])
        again = client.get(retried)
        assert again.command == "echo started; sleep 60" and again.labels["retry-of"] == str(job_id)
        client.cancel(retried)


def loud_job(pool: ServerProcess) -> int:
    """A finished job that wrote 40,000 lines (2.8 MB): its id."""
    script = (
        "import sys\n"
        "for i in range(40000):\n"
        "    sys.stdout.write(f'line {i:05d} ' + 'x' * 60 + '\\n')\n"
    )
    with Client(pool.url, pool.token) as client:
        job_id = client.submit({"command": [sys.executable, "-c", script], "name": "loud"})
        wait_final(client, job_id)
    return job_id


def test_megabytes_of_log_keep_the_page_responsive(page: Any, pool: ServerProcess) -> None:
    sign_in(page, pool)
    job_id = loud_job(pool)
    page.goto(f"{pool.url}/#/jobs/{job_id}")
    log = page.locator("#log")
    log.get_by_text("line 39999").wait_for()
    assert log.locator(".log-line").count() <= 5000
    assert "35000 earlier lines" in log.locator(".log-notice").inner_text().replace(",", "")
    at_end = page.evaluate(
        "(() => { const l = document.getElementById('log');"
        " return l.scrollHeight - l.scrollTop - l.clientHeight < 30; })()"
    )
    assert at_end


def test_the_pool_page_drains_disables_and_enables(page: Any, pool: ServerProcess) -> None:
    sign_in(page, pool)
    page.goto(f"{pool.url}/#/pool")
    agents = page.get_by_role("table", name="Agents")
    agents.get_by_text("w2").wait_for()
    page.get_by_text("autoscaling is off").wait_for()
    screenshot(page, "pool")
    page.get_by_role("button", name="Disable w1").click()
    page.get_by_role("button", name="Enable w1").wait_for()
    with Client(pool.url, pool.token) as client:
        agents_now = client.request("GET", "/api/v1/agents")["agents"]
        assert next(a for a in agents_now if a["name"] == "w1")["disabled"]
    page.get_by_role("button", name="Enable w1").click()
    page.get_by_role("button", name="Disable w1").wait_for()
    page.get_by_role("button", name="Drain w2").click()
    w2_state = agents.locator("tr", has_text="w2").locator(".badge")
    w2_state.filter(has_text=re.compile("draining|offline")).wait_for()


def two_tenants(pool: ServerProcess) -> tuple[dict[str, str], int]:
    """Tenants team-a and team-b, each with a finished job: their tokens, and the id of
    team-a's job (it printed "secret")."""
    with Client(pool.url, pool.token) as admin:
        tokens = {
            name: admin.request("POST", "/api/v1/tenants", body={"name": name})["token"]
            for name in ("team-a", "team-b")
        }
    with Client(pool.url, tokens["team-a"]) as team_a:
        theirs = team_a.submit({"command": ["echo", "secret"], "name": "a's job"})
        wait_final(team_a, theirs)
    with Client(pool.url, tokens["team-b"]) as team_b:
        ours = team_b.submit({"command": ["echo", "ours"], "name": "b's job"})
        wait_final(team_b, ours)
    return tokens, theirs


def test_a_tenant_sees_only_its_own_tenant(page: Any, pool: ServerProcess) -> None:
    tokens, theirs = two_tenants(pool)
    sign_in(page, pool, tokens["team-b"])
    assert page.locator("#who").inner_text() == "tenant team-b"
    page.get_by_role("table", name="Recent jobs").get_by_text("b's job").wait_for()
    assert "a's job" not in page.get_by_role("table", name="Recent jobs").inner_text()
    page.goto(f"{pool.url}/#/jobs/{theirs}")
    page.get_by_role("heading", name="Job not found").wait_for()
    assert "secret" not in page.content()
    screenshot(page, "not-found")
    page.goto(f"{pool.url}/#/pool")
    page.get_by_text("The pool's agents are shown to admin tokens.").wait_for()
    # Hidden is not enough: the API itself refuses the tenant the admin's actions.
    refused = httpx.post(
        f"{pool.url}/api/v1/agents/w1/disable",
        headers={"Authorization": f"Bearer {tokens['team-b']}"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
