"""Worker tokens do worker things only, tried as a worker token's holder would.

Every route of the app is either on the worker's allow-list (what `o11n worker` calls),
public, or refused to a worker token: a 404 for one tenant's object (as for another
tenant), a 403 for everything else (listings and admin routes). A worker's name is bound
to the token that registered it, across a scheduler restart: another worker token can
neither register as it nor heartbeat, report or append logs for its attempts.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute, Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from o11n.cas.store import CasStore
from o11n.scheduler.app import create_app
from o11n.scheduler.service import Scheduler
from o11n.store.database import Database
from tests.scheduler.inproc import (
    ADMIN_TOKEN,
    AppClient,
    app_client,
    auth,
    call,
    ok,
    tenant,
    worker_token,
)

DIGEST = "0" * 64
WORKER_ROUTES = {  # what o11n/worker calls (and the per-attempt forms of its reports)
    ("POST", "/api/v1/workers/register"),
    ("POST", "/api/v1/workers/{name}/lease"),
    ("POST", "/api/v1/workers/{name}/heartbeat"),
    ("POST", "/api/v1/workers/{name}/reports"),
    ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/start"),
    ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/result"),
    ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/logs"),
    ("POST", "/api/v1/cas/missing"),
    ("PUT", "/api/v1/cas/blobs/{digest}"),
    ("GET", "/api/v1/cas/blobs/{digest}"),
}
PUBLIC_PATHS = {  # no token needed, no tenant's data
    "/healthz",
    "/metrics",
    "/",
    "/ui/{name}",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
OBJECT_PARAMS = ("{job_id}", "{pipeline_id}", "{namespace}")  # one tenant's object: a 404
SERVICE_FILE = "name: web\nnamespace: alice\ncommand: sleep 1000\n"
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/jobs"): {"command": ["true"]},
    ("POST", "/api/v1/jobs/batch"): {"jobs": [{"command": ["true"]}]},
    ("POST", "/api/v1/tenants"): {"name": "mallory"},
    ("POST", "/api/v1/pipelines"): {
        "pipeline": "name: p\nstages: [{name: s, substages: [{name: a, run: 'true'}]}]\n"
    },
    ("POST", "/api/v1/services"): {"service": SERVICE_FILE},
    ("POST", "/api/v1/services/{namespace}/{name}/scale"): {"instances": 0},
    ("POST", "/api/v1/agents/attributes"): {"agents": ["w-a"], "key": "k", "string": "v"},
}


class Pool:
    """A scheduler with one tenant's job, pipeline and service, and two worker tokens."""

    def __init__(self, client: AppClient) -> None:
        self.client = client
        self.alice = tenant(client, "alice")
        self.job_id = ok(client, self.alice, "POST", "/api/v1/jobs", {"command": ["true"]})["id"]
        body = BODIES[("POST", "/api/v1/pipelines")]
        self.pipeline_id = ok(client, self.alice, "POST", "/api/v1/pipelines", body)["id"]
        ok(client, self.alice, "POST", "/api/v1/services", {"service": SERVICE_FILE})
        self.token_a, self.token_b = worker_token(client), worker_token(client)

    def path(self, template: str) -> str:
        values = {
            "job_id": self.job_id,
            "pipeline_id": self.pipeline_id,
            "namespace": "alice",
            "name": "w-a" if "/workers/" in template or "/agents/" in template else "web",
            "attempt": 1,
            "digest": DIGEST,
        }
        return template.format(**values)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[AppClient]:
    with app_client(tmp_path / "data") as app:
        yield app


@pytest.fixture
def pool(client: AppClient) -> Pool:
    return Pool(client)


def register(client: AppClient, token: str, name: str) -> Any:
    body = {"name": name, "cpu": 4, "memory": "4G"}
    return call(client, token, "POST", "/api/v1/workers/register", body)


@functools.cache
def app_routes() -> tuple[tuple[BaseRoute, str], ...]:
    """Every route of the app as create_app builds it (on a throwaway store), with its
    path; routers that FastAPI keeps as included routers are walked into."""
    with tempfile.TemporaryDirectory() as data:
        db = Database(f"sqlite:///{data}/o11n.db")
        try:
            app = create_app(Scheduler(db, ADMIN_TOKEN), CasStore(Path(data) / "cas"))
            return tuple(_walk(app.routes))
        finally:
            db.close()


def _walk(routes: list[BaseRoute]) -> Iterator[tuple[BaseRoute, str]]:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI >= 0.16x
        if contexts is None:
            yield route, getattr(route, "path", "")
        else:
            for context in contexts():
                yield context.original_route, context.path or context.original_route.path


def http_routes() -> list[tuple[str, str]]:
    found = []
    for route, path in app_routes():
        if isinstance(route, APIRoute | Route):
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def websocket_routes() -> list[str]:
    return [path for route, path in app_routes() if isinstance(route, APIWebSocketRoute)]


def test_every_route_is_classified() -> None:
    """A new route cannot be forgotten: each is tried below unless it is on the worker's
    allow-list or public, and there is no route of another kind."""
    kinds = {type(route) for route, _ in app_routes()}
    assert kinds <= {APIRoute, APIWebSocketRoute, Route}, kinds
    assert set(WORKER_ROUTES) <= set(http_routes())
    assert {p for m, p in http_routes() if p in PUBLIC_PATHS} == PUBLIC_PATHS
    assert len(websocket_routes()) == 3


def refused_routes() -> list[tuple[str, str]]:
    """Every HTTP route but the worker's and the public ones."""
    return [
        (m, p) for m, p in http_routes() if (m, p) not in WORKER_ROUTES and p not in PUBLIC_PATHS
    ]


@pytest.mark.parametrize(("method", "template"), refused_routes())
def test_a_worker_token_is_refused_on_every_tenant_route(
    pool: Pool, method: str, template: str
) -> None:
    client = pool.client
    answer = call(client, pool.token_b, method, pool.path(template), BODIES.get((method, template)))
    expected = 404 if any(p in template for p in OBJECT_PARAMS) else 403
    assert answer.status_code == expected, f"{method} {template}: {answer.text[:300]}"
    assert answer.json()["error"]["code"] in ("not_found", "forbidden")
    # nothing of alice's changed
    assert ok(client, pool.alice, "GET", f"/api/v1/jobs/{pool.job_id}")["state"] == "queued"
    service = ok(client, pool.alice, "GET", "/api/v1/services/alice/web")
    assert service["instances"] == 1 and not service["deleting"]
    assert ok(client, pool.alice, "GET", f"/api/v1/pipelines/{pool.pipeline_id}")["state"] == (
        "running"
    )


@pytest.mark.parametrize("template", websocket_routes())
def test_a_worker_token_cannot_watch(pool: Pool, template: str) -> None:
    """Every stream answers a worker token with an error and closes; it gets no event,
    log line or pipeline record (since=1 makes the old code replay alice's events)."""
    url = pool.client.ws_url + pool.path(template) + "?since=1"
    with connect(url, additional_headers=auth(pool.token_b), open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "error", first
        expected = "not_found" if "{" in template else "forbidden"
        assert first["code"] == expected, first
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)


def test_a_worker_token_still_does_what_a_worker_does(pool: Pool) -> None:
    """Register, lease (the spec comes inside the lease), report, logs and blobs."""
    client, token = pool.client, pool.token_a
    assert register(client, token, "w-a").status_code == 200
    missing = ok(client, token, "POST", "/api/v1/cas/missing", {"digests": [DIGEST]})
    assert missing["missing"] == [DIGEST]
    grants = ok(client, token, "POST", "/api/v1/workers/w-a/lease", {"max_jobs": 8, "wait": 0})
    grant = next(g for g in grants["jobs"] if g["id"] == pool.job_id)
    assert grant["spec"]["command"] == ["true"]
    base, lease = f"/api/v1/jobs/{pool.job_id}/attempts/1", {"lease_id": grant["lease_id"]}
    ok(client, token, "POST", base + "/start", lease)
    logs = {**lease, "chunks": [{"seq": 0, "data": "ok\n"}]}
    assert ok(client, token, "POST", base + "/logs", logs)["stored"] == 1
    result = {
        "reports": [{"job_id": pool.job_id, "attempt": 1, **lease, "result": {"exit_code": 0}}]
    }
    (answer,) = ok(client, token, "POST", "/api/v1/workers/w-a/reports", result)["results"]
    assert answer["ok"] and answer["state"] == "succeeded"


def lease_as_a(pool: Pool) -> dict[str, Any]:
    """Worker A registers and leases alice's job; its grant."""
    assert register(pool.client, pool.token_a, "w-a").status_code == 200
    body = {"max_jobs": 8, "wait": 0}
    grants = ok(pool.client, pool.token_a, "POST", "/api/v1/workers/w-a/lease", body)["jobs"]
    grant: dict[str, Any] = next(g for g in grants if g["id"] == pool.job_id)
    return grant


def test_another_worker_token_cannot_register_as_a_bound_name(pool: Pool) -> None:
    assert register(pool.client, pool.token_a, "w-a").status_code == 200
    answer = register(pool.client, pool.token_b, "w-a")
    assert answer.status_code == 403, answer.text
    assert "w-a" in answer.json()["error"]["message"]
    lease = call(pool.client, pool.token_b, "POST", "/api/v1/workers/w-a/lease", {"wait": 0})
    assert lease.status_code == 403, lease.text
    assert register(pool.client, pool.token_a, "w-a").status_code == 200  # A again: fine
    assert register(pool.client, ADMIN_TOKEN, "w-a").status_code == 200  # the admin may


def test_the_binding_survives_a_scheduler_restart(tmp_path: Path) -> None:
    with app_client(tmp_path / "data") as client:
        token_a, token_b = worker_token(client), worker_token(client)
        assert register(client, token_a, "w-a").status_code == 200
    with app_client(tmp_path / "data") as client:
        assert register(client, token_b, "w-a").status_code == 403
        assert register(client, token_a, "w-a").status_code == 200


def test_another_worker_cannot_heartbeat_for_a_workers_attempt(pool: Pool) -> None:
    grant = lease_as_a(pool)
    held = {"attempts": [{"job_id": pool.job_id, "attempt": 1, "lease_id": grant["lease_id"]}]}
    as_a = call(pool.client, pool.token_b, "POST", "/api/v1/workers/w-a/heartbeat", held)
    assert as_a.status_code == 403, as_a.text
    assert register(pool.client, pool.token_b, "w-b").status_code == 200
    as_b = ok(pool.client, pool.token_b, "POST", "/api/v1/workers/w-b/heartbeat", held)
    assert as_b["stop"] == [pool.job_id]  # not B's: B is told to stop it, A's lease is not renewed
    mine = ok(pool.client, pool.token_a, "POST", "/api/v1/workers/w-a/heartbeat", held)
    assert mine["stop"] == []
    admin = ok(pool.client, ADMIN_TOKEN, "POST", "/api/v1/workers/w-a/heartbeat", held)
    assert admin["stop"] == []  # the admin may act as any worker


def test_another_worker_cannot_report_for_a_workers_attempt(pool: Pool) -> None:
    grant = lease_as_a(pool)
    lease = {"lease_id": grant["lease_id"]}
    result = {"job_id": pool.job_id, "attempt": 1, **lease, "result": {"exit_code": 1}}
    client, token_b = pool.client, pool.token_b
    as_a = call(client, token_b, "POST", "/api/v1/workers/w-a/reports", {"reports": [result]})
    assert as_a.status_code == 403, as_a.text
    assert register(client, token_b, "w-b").status_code == 200
    body = {"reports": [result]}
    (as_b,) = ok(client, token_b, "POST", "/api/v1/workers/w-b/reports", body)["results"]
    assert not as_b["ok"] and "not leased to w-b" in as_b["message"]
    base = f"/api/v1/jobs/{pool.job_id}/attempts/1"
    assert call(client, token_b, "POST", base + "/start", lease).status_code == 403
    ended = call(client, token_b, "POST", base + "/result", {**lease, "exit_code": 1})
    assert ended.status_code == 403, ended.text
    assert ok(client, ADMIN_TOKEN, "GET", f"/api/v1/jobs/{pool.job_id}")["state"] == "assigned"
    mine = {"reports": [{**result, "result": {"exit_code": 0}}]}
    (as_a_itself,) = ok(client, pool.token_a, "POST", "/api/v1/workers/w-a/reports", mine)[
        "results"
    ]
    assert as_a_itself["state"] == "succeeded"


def test_another_worker_cannot_append_logs_to_a_workers_attempt(pool: Pool) -> None:
    grant = lease_as_a(pool)
    logs = {"lease_id": grant["lease_id"], "chunks": [{"seq": 0, "data": "forged\n"}]}
    path = f"/api/v1/jobs/{pool.job_id}/attempts/1/logs"
    answer = call(pool.client, pool.token_b, "POST", path, logs)
    assert answer.status_code == 403, answer.text
    chunks = ok(pool.client, ADMIN_TOKEN, "GET", f"/api/v1/jobs/{pool.job_id}/logs")["chunks"]
    assert chunks == []
    assert ok(pool.client, pool.token_a, "POST", path, logs)["stored"] == 1
