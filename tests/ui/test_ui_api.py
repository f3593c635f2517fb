"""The dashboard's own routes: counters, activity charts from the event log, and the
static files with their security headers."""

from __future__ import annotations

import httpx

from o11n.client import Client
from o11n.scheduler.ui_api import bucket_seconds, chart
from tests.e2e.conftest import StartServer
from tests.e2e.jobs import wait_final
from tests.servers import ServerProcess


def test_buckets_are_whole_minutes_and_at_most_180() -> None:
    assert bucket_seconds(1) == 60
    assert bucket_seconds(3) == 60
    assert bucket_seconds(24) == 480
    assert 168 * 3600 / bucket_seconds(168) <= 180


def test_chart_counts_ends_and_queue_waits_per_bucket() -> None:
    rows = [
        (1, 1000.0, "queued", None),
        (1, 1010.0, "assigned", "queued"),
        (1, 1070.0, "succeeded", "running"),
        (2, 1075.0, "queued", "running"),  # requeued: not a new submit
        (2, 1100.0, "assigned", "queued"),
        (2, 1110.0, "failed", "running"),
        (3, 1111.0, "assigned", "queued"),  # queued before the window
        (3, 1112.0, "cancelled", "running"),
    ]
    buckets = chart(rows, {3: 1051.0}, since=1000.0, now=1180.0, step=60)
    assert [b["at"] for b in buckets] == [1000.0, 1060.0, 1120.0]
    first, second, third = buckets
    assert (first["submitted"], first["started"], first["wait_avg"]) == (1, 1, 10.0)
    assert (second["submitted"], second["started"], second["succeeded"]) == (0, 2, 1)
    assert second["failed"] == 1  # failed counts, cancelled does not
    assert (second["wait_avg"], second["wait_max"]) == (42.5, 60.0)
    assert third == {
        "at": 1120.0,
        "submitted": 0,
        "started": 0,
        "succeeded": 0,
        "failed": 0,
        "wait_avg": None,
        "wait_max": None,
    }


def test_summary_and_activity_keep_a_tenant_to_itself(start_server: StartServer) -> None:
    server = start_server()
    with Client(server.url, server.token) as admin:
        token = admin.request("POST", "/api/v1/tenants", body={"name": "team-a"})["token"]
        admin.submit({"command": ["true"], "tags": {"pool": "none"}})  # default's, queued
    with Client(server.url, token) as team_a:
        team_a.submit_many([{"command": ["true"], "tags": {"pool": "none"}}] * 2)
        summary = team_a.request("GET", "/api/v1/ui/summary")
        assert (summary["role"], summary["tenant"], summary["queued"]) == ("tenant", "team-a", 2)
        assert [t["name"] for t in summary["tenants"]] == ["team-a"]
        activity = team_a.request("GET", "/api/v1/ui/activity", params={"hours": 1})
        assert sum(b["submitted"] for b in activity["buckets"]) == 2
        assert activity["bucket_seconds"] == 60 and len(activity["buckets"]) in (60, 61)
    with Client(server.url, server.token) as admin:
        summary = admin.request("GET", "/api/v1/ui/summary")
        assert summary["queued"] == 3 and summary["workers"]["online"] == 0
        activity = admin.request("GET", "/api/v1/ui/activity")
        assert sum(b["submitted"] for b in activity["buckets"]) == 3


def test_activity_counts_a_finished_job_and_its_wait(pool: ServerProcess) -> None:
    with Client(pool.url, pool.token) as client:
        wait_final(client, client.submit({"command": ["true"]}))
        buckets = client.request("GET", "/api/v1/ui/activity")["buckets"]
    assert sum(b["succeeded"] for b in buckets) == 1
    waits = [b["wait_max"] for b in buckets if b["wait_max"] is not None]
    assert len(waits) == 1 and 0 <= waits[0] < 10


def test_the_page_and_its_files_are_served_with_a_strict_policy(
    start_server: StartServer,
) -> None:
    server = start_server()
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/ui/app.js">' in page.text
    script = httpx.get(server.url + "/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for bad in ("/ui/missing.js", "/ui/..%2Fapp.py", "/ui/routes.py", "/ui/App.js"):
        answer = httpx.get(server.url + bad)
        assert answer.status_code == 404, bad
        assert answer.json()["error"]["code"] in ("not_found", "http_error")
    assert "/ui/{name}" not in httpx.get(server.url + "/openapi.json").text
