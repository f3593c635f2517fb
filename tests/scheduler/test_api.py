"""The HTTP API of a real scheduler process: jobs, errors, auth, tenants, workers, metrics."""

from __future__ import annotations

import httpx
import pytest

from o11n.client import APIError, Client
from o11n.errors import BadRequest, Forbidden, NotFound, Unauthorized
from tests.servers import ServerProcess


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_submit_get_list_cancel(admin: Client) -> None:
    job_id = admin.submit(
        {
            "command": ["make", "test"],
            "tags": {"arch": "x86_64"},
            "labels": {"team": "core"},
            "resources": {"memory": "1G"},
        }
    )
    job = admin.get(job_id)
    assert job.state == "queued" and job.tags == {"arch": "x86_64"}
    assert job.resources.memory == 2**30 and job.tenant == "default"
    jobs, _ = admin.jobs(labels={"team": "core"})
    assert [j.id for j in jobs] == [job_id]
    assert admin.cancel(job_id) == "cancelled"
    assert admin.get(job_id).state == "cancelled"
    assert [e.state for e in admin.events(job_id)] == ["queued", "cancelled"]


def test_batch_and_cursor_pagination(admin: Client) -> None:
    ids = admin.submit_many([{"command": ["true"], "priority": i % 3} for i in range(25)])
    assert ids == sorted(ids) and len(set(ids)) == 25
    seen, cursor = [], None
    while True:
        page, cursor = admin.jobs(limit=10, cursor=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_idempotent_submit(server: ServerProcess) -> None:
    body = {"command": ["true"], "idempotency_key": "build-42"}
    first = httpx.post(server.url + "/api/v1/jobs", json=body, headers=auth(server.token))
    again = httpx.post(server.url + "/api/v1/jobs", json=body, headers=auth(server.token))
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert (first.json()["created"], again.json()["created"]) == (True, False)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/v1/jobs", {"command": []}, 422),
        ("POST", "/api/v1/jobs", {"command": ["x"], "resources": {"memory": "lots"}}, 422),
        ("POST", "/api/v1/jobs", {"command": ["x"], "tags": {"a b": "c"}}, 422),
        ("POST", "/api/v1/jobs", {"command": ["x"], "surprise": 1}, 422),
        ("POST", "/api/v1/jobs", "not json", 422),
        ("POST", "/api/v1/jobs/batch", {"jobs": [{"command": ["x"]}] * 1001}, 422),
        ("POST", "/api/v1/jobs", {"command": ["x"], "tenant": "nobody"}, 404),
        ("GET", "/api/v1/jobs/12345", None, 404),
        ("GET", "/api/v1/jobs/abc", None, 422),
        ("GET", "/api/v1/jobs?cursor=zz", None, 400),
        ("GET", "/api/v1/jobs?tag=novalue", None, 400),
        ("GET", "/api/v1/jobs?state=sleeping", None, 422),
        ("POST", "/api/v1/jobs/1/attempts/1/result", {"lease_id": "x", "exit_code": 0}, 409),
        ("POST", "/api/v1/workers/nobody/lease", {"wait": 0}, 404),
        ("GET", "/api/v1/nothing-here", None, 404),
    ],
)
def test_bad_input_gets_a_json_4xx_and_changes_nothing(
    server: ServerProcess, method: str, path: str, body: object, status: int
) -> None:
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    answer = httpx.request(method, server.url + path, headers=auth(server.token), **kwargs)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] and error["message"]
    listed = httpx.get(server.url + "/api/v1/jobs", headers=auth(server.token)).json()
    assert listed["jobs"] == []


def test_tokens_and_tenants(server: ServerProcess, admin: Client) -> None:
    with pytest.raises(Unauthorized), Client(server.url, "", retries=0) as anonymous:
        anonymous.jobs()
    with pytest.raises(Unauthorized), Client(server.url, "wrong", retries=0) as stranger:
        stranger.jobs()
    alice_token = admin.create_tenant("alice", 2)["token"]
    bob_token = admin.create_tenant("bob")["token"]
    with Client(server.url, alice_token) as alice, Client(server.url, bob_token) as bob:
        job_id = alice.submit({"command": ["true"]})
        assert alice.get(job_id).tenant == "alice"
        with pytest.raises(NotFound):
            bob.get(job_id)
        with pytest.raises(NotFound):
            bob.cancel(job_id)
        with pytest.raises(Forbidden):
            bob.create_tenant("mallory")
        with pytest.raises(Forbidden):
            bob.submit({"command": ["true"], "tenant": "alice"})
        with pytest.raises(Forbidden):
            bob.worker_token()
        assert bob.jobs()[0] == []
    tenants = {t["name"]: t for t in admin.tenants()}
    assert tenants["alice"]["weight"] == 2 and tenants["alice"]["queued"] == 1
    stored = b"".join(p.read_bytes() for p in server.data_dir.glob("o11n.db*"))
    assert b"o11n_ten_" not in stored and alice_token.encode() not in stored  # hashed only


def test_admin_token_file_is_private(server: ServerProcess) -> None:
    assert (server.data_dir / "admin-token").stat().st_mode & 0o777 == 0o600


def test_worker_round_trip_over_http(server: ServerProcess, admin: Client) -> None:
    token = admin.worker_token()
    job_id = admin.submit({"command": "echo hi", "tags": {"arch": "x86_64"}})
    with Client(server.url, token) as worker:
        with pytest.raises(APIError):
            worker.create_tenant("nope")
        reg = worker.request(
            "POST",
            "/api/v1/workers/register",
            body={"name": "w1", "tags": {"arch": "x86_64"}, "cpu": 2, "memory": "4G"},
        )
        assert reg["lease_seconds"] == 30
        leased = worker.request("POST", "/api/v1/workers/w1/lease", body={"max_jobs": 5})
        (grant,) = leased["jobs"]
        assert grant["id"] == job_id and grant["spec"]["command"] == "echo hi"
        base = f"/api/v1/jobs/{job_id}/attempts/1"
        lease = {"lease_id": grant["lease_id"]}
        worker.request("POST", base + "/start", body=lease)
        logs = {**lease, "chunks": [{"seq": 0, "data": "hi\n"}]}
        assert worker.request("POST", base + "/logs", body=logs)["stored"] == 1
        assert worker.request("POST", base + "/logs", body=logs)["stored"] == 0
        beat = worker.request(
            "POST",
            "/api/v1/workers/w1/heartbeat",
            body={"attempts": [{"job_id": job_id, "attempt": 1, **lease}]},
        )
        assert beat == {"stop": [], "drain": False}
        (listed,) = admin.workers()  # the admin's: a worker token lists no workers
        assert listed["running"] == [job_id] and listed["free"]["cpu"] == 1
        done = worker.request("POST", base + "/result", body={**lease, "exit_code": 0})
        assert done["state"] == "succeeded"
        with pytest.raises(APIError) as refused:
            worker.request("POST", base + "/result", body={**lease, "exit_code": 1})
        assert refused.value.status == 409
    assert admin.get(job_id).state == "succeeded"
    assert admin.logs(job_id)["chunks"][0]["data"] == "hi\n"


def test_health_metrics_openapi(server: ServerProcess, admin: Client) -> None:
    admin.submit({"command": ["true"]})
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok", "queued": 1, "leased": 0}
    metrics = httpx.get(server.url + "/metrics").text
    assert 'o11n_queue_length{tenant="default"} 1.0' in metrics
    assert 'o11n_jobs{state="queued"} 1.0' in metrics
    assert "o11n_dispatch_latency_seconds_bucket" in metrics
    assert "o11n_leases_expired_total 0.0" in metrics
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"]


def test_bad_request_maps_to_bad_request(admin: Client) -> None:
    with pytest.raises(BadRequest):
        admin.submit({"command": ["true"], "priority": 10**6})


def test_the_blob_store_verifies_what_it_is_given(server: ServerProcess) -> None:
    import hashlib

    headers = auth(server.token)
    digest = hashlib.sha256(b"payload").hexdigest()
    url = f"{server.url}/api/v1/cas/blobs/{digest}"
    wrong = httpx.put(url, content=b"something else", headers=headers)
    assert wrong.status_code == 400 and "SHA-256" in wrong.json()["error"]["message"]
    assert httpx.get(url, headers=headers).status_code == 404
    missing = httpx.post(
        f"{server.url}/api/v1/cas/missing", json={"digests": [digest]}, headers=headers
    )
    assert missing.json() == {"missing": [digest]}
    stored = httpx.put(url, content=b"payload", headers=headers)
    assert stored.status_code == 201 and stored.json()["stored"] is True
    again = httpx.put(url, content=b"payload", headers=headers)
    assert again.status_code == 200 and again.json()["stored"] is False
    assert httpx.get(url, headers=headers).content == b"payload"
    assert httpx.get(url).status_code == 401
    bad = httpx.get(f"{server.url}/api/v1/cas/blobs/not-a-digest", headers=headers)
    assert bad.status_code == 422 and "error" in bad.json()


def test_a_pipeline_with_a_workspace_the_store_lacks_is_refused(server: ServerProcess) -> None:
    text = "name: p\nstages:\n  - name: s\n    substages:\n      - {name: a, run: 'true'}\n"
    body = {"pipeline": text, "workspace": "0" * 64}
    answer = httpx.post(f"{server.url}/api/v1/pipelines", json=body, headers=auth(server.token))
    assert answer.status_code == 400 and "upload it first" in answer.json()["error"]["message"]
