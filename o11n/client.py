"""The o11n SDK: a typed client of the scheduler's HTTP and WebSocket API, with retries.

    from o11n.client import Client
    with Client("http://127.0.0.1:8787", token) as o11n:
        job_id = o11n.submit({"command": ["make", "test"], "tags": {"arch": "x86_64"}})
        for message in o11n.watch(job_id):
            print(message)

Calls that are safe to repeat (reads, and submits, which carry an idempotency
key) are retried with exponential back-off and jitter when the scheduler cannot
be reached or answers 502/503/504, so a scheduler restart is a pause, not an error.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from o11n.cas import tree as trees
from o11n.cas.store import digest_of
from o11n.core.jobs import Event, Job, JobSpec
from o11n.core.states import JobState
from o11n.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LeaseExpired,
    NotFound,
    NotRegistered,
    O11nError,
    Unauthorized,
    Unavailable,
)

DEFAULT_SERVER = "http://127.0.0.1:8787"
RETRY_STATUS = {502, 503, 504}
BLOB_TIMEOUT = 600.0
CODES: dict[str, type[O11nError]] = {
    "lease_expired": LeaseExpired,
    "worker_not_registered": NotRegistered,
}
ERRORS: dict[int, type[O11nError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
    503: Unavailable,
}


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with full jitter: retry n waits up to base * 2**(n-1), capped."""

    base: float = 0.1
    cap: float = 5.0
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...)."""
        return float(self.jitter() * min(self.cap, self.base * 2 ** (attempt - 1)))


class APIError(O11nError):
    """An error answer from the scheduler; `status` is the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def raise_for(response: httpx.Response) -> None:
    """Raise the o11n error an error answer stands for."""
    raise error_for(response.status_code, response.content)


def error_for(status: int, body: bytes) -> APIError:
    """The o11n error (also an APIError) an error answer stands for."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {status}: {body[:200].decode(errors='replace')}"
    base = CODES.get(code) or ERRORS.get(status, O11nError)
    error_type: type[APIError] = type(base.__name__, (APIError, base), {})
    return error_type(status, code, message)


def default_token() -> str | None:
    """$O11N_TOKEN, else the admin token of a local scheduler in $O11N_DATA (./.o11n)."""
    token = os.environ.get("O11N_TOKEN")
    if token:
        return token
    path = Path(os.environ.get("O11N_DATA", ".o11n")) / "admin-token"
    return path.read_text().strip() if path.exists() else None


@dataclass(frozen=True, slots=True)
class TreeUpload:
    """What storing a folder took: its files, distinct blobs, and those sent."""

    files: int
    blobs: int
    uploaded: int
    uploaded_bytes: int


class Client:
    """A connection to one scheduler."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.server = (server or os.environ.get("O11N_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.token = token if token is not None else default_token()
        self.retries, self.backoff = retries, Backoff(backoff, max_backoff, jitter)
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- plumbing ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Any = None,
        retry: bool = True,
        timeout: float | None = None,
        raw: Callable[[], Iterable[bytes]] | None = None,
    ) -> Any:
        """One API call; retried with back-off when `retry` and the scheduler is unreachable.
        `raw` gives the body's bytes instead of `body` as JSON (called again on each try)."""
        attempt = 0
        content = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        limit = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    content=raw() if raw is not None else content,
                    params=params,
                    headers=headers,
                    timeout=limit,
                )
                if response.status_code not in RETRY_STATUS or not retry:
                    break
                failure = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                if not retry:
                    raise Unavailable(
                        f"cannot reach the scheduler at {self.server}: {exc}"
                    ) from exc
                failure = str(exc) or type(exc).__name__
            attempt += 1
            if attempt > self.retries:
                raise Unavailable(f"cannot reach the scheduler at {self.server}: {failure}")
            self._sleep(self.delay(attempt))
        if response.status_code >= 400:
            raise_for(response)
        return response.json() if response.content else None

    def delay(self, attempt: int) -> float:
        """Back-off before retry number `attempt`: exponential, capped, with full jitter."""
        return self.backoff.delay(attempt)

    # -- the content-addressed store ---------------------------------------------

    def missing(self, digests: Iterable[str]) -> list[str]:
        """Which of these blobs the store lacks (asked in batches of 10,000)."""
        wanted, missing = list(digests), []
        for i in range(0, len(wanted), 10_000):
            body = {"digests": wanted[i : i + 10_000]}
            missing += self.request("POST", "/api/v1/cas/missing", body=body)["missing"]
        return missing

    def put_blob(self, digest: str, source: Path | bytes) -> None:
        """Upload a file's content (or bytes) as the blob `digest`."""

        def chunks() -> Iterator[bytes]:
            if isinstance(source, bytes):
                yield source
                return
            with source.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    yield chunk

        self.request("PUT", f"/api/v1/cas/blobs/{digest}", raw=chunks, timeout=BLOB_TIMEOUT)

    def get_blob(self, digest: str) -> bytes:
        """A blob's content."""
        response = self._http.get(f"/api/v1/cas/blobs/{digest}", timeout=BLOB_TIMEOUT)
        if response.status_code >= 400:
            raise_for(response)
        return response.content

    def upload_tree(
        self, root: Path, progress: Callable[[int, int], None] | None = None
    ) -> tuple[str, TreeUpload]:
        """Store a folder (minus what `.gitignore` and `.o11nignore` exclude); the digest
        of its tree and what it took. Blobs the store holds already are not sent again.
        `progress(bytes_sent, bytes_to_send)` is told as the upload goes."""
        tree, sources = trees.scan(root)
        missing = self.missing(sources)
        total = sum(sources[d].stat().st_size for d in missing)
        sent = 0
        for digest in missing:
            self.put_blob(digest, sources[digest])
            sent += sources[digest].stat().st_size
            if progress is not None:
                progress(sent, total)
        listing = trees.to_bytes(tree)
        digest = digest_of(listing)
        self.put_blob(digest, listing)
        files = sum(1 for e in tree.values() if e.digest)
        return digest, TreeUpload(files, len(sources), len(missing), sent)

    # -- jobs -------------------------------------------------------------------

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> int:
        """Submit a job; returns its id once it is durably stored."""
        return self.submit_many([spec])[0]

    def submit_many(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> list[int]:
        """Submit jobs in one commit (up to 1,000); returns their ids in order."""
        bodies = [_with_key(spec) for spec in specs]
        if len(bodies) == 1:
            return [int(self.request("POST", "/api/v1/jobs", body=bodies[0])["id"])]
        answer = self.request("POST", "/api/v1/jobs/batch", body={"jobs": bodies})
        return [int(job["id"]) for job in answer["jobs"]]

    def get(self, job_id: int) -> Job:
        """One job with its attempts."""
        return Job.model_validate(self.request("GET", f"/api/v1/jobs/{job_id}"))

    def jobs(
        self,
        *,
        states: Sequence[str] = (),
        tenant: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page of jobs, newest first, and the cursor of the next page."""
        params: dict[str, Any] = {"state": list(states), "limit": limit}
        params["tag"] = [f"{k}={v}" for k, v in (tags or {}).items()]
        params["label"] = [f"{k}={v}" for k, v in (labels or {}).items()]
        if tenant:
            params["tenant"] = tenant
        if cursor:
            params["cursor"] = cursor
        page = self.request("GET", "/api/v1/jobs", params=params)
        return [Job.model_validate(j) for j in page["jobs"]], page["next_cursor"]

    def cancel(self, job_id: int) -> JobState:
        """Cancel a job; returns its state (cancelled)."""
        answer = self.request("POST", f"/api/v1/jobs/{job_id}/cancel", retry=False)
        return JobState(answer["state"])

    def events(self, job_id: int, after: int = 0) -> list[Event]:
        """A job's events after event id `after`."""
        page = self.request("GET", f"/api/v1/jobs/{job_id}/events", params={"after": after})
        return [Event.model_validate(e) for e in page["events"]]

    def logs(self, job_id: int, after: tuple[int, int] = (0, -1)) -> dict[str, Any]:
        """A page of a job's log chunks after (attempt, seq)."""
        params = {"after_attempt": after[0], "after_seq": after[1]}
        page: dict[str, Any] = self.request("GET", f"/api/v1/jobs/{job_id}/logs", params=params)
        return page

    def watch(self, job_id: int, since: int = 0, logs: bool = True) -> Iterator[dict[str, Any]]:
        """A job's events and log chunks as they happen, until its final event.

        Reconnects (resuming after the last event seen) when the connection drops.
        """
        failures, log_after = 0, (0, -1)
        while True:
            url = self._ws_url(
                f"/api/v1/jobs/{job_id}/watch",
                since=since,
                logs=logs,
                log_attempt=log_after[0],
                log_seq=log_after[1],
            )
            try:
                with connect(url, additional_headers=self._ws_headers(), open_timeout=10) as ws:
                    for raw in ws:
                        message = json.loads(raw)
                        failures = 0
                        if message["type"] == "error":
                            raise APIError(404, message["code"], message["message"])
                        if message["type"] == "end":
                            return
                        if message["type"] == "event":
                            since = message["id"]
                        elif message["type"] == "log":
                            log_after = (message["attempt"], message["seq"])
                        yield message
                problem = "the stream closed before the job ended"
            except (OSError, ConnectionClosedError, InvalidStatus, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
            failures += 1
            if failures > self.retries:
                raise Unavailable(f"lost the watch on job {job_id}: {problem}")
            self._sleep(self.delay(failures))

    def _ws_url(self, path: str, **params: Any) -> str:
        query = str(
            httpx.QueryParams(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
            )
        )
        return self.server.replace("http", "ws", 1) + path + "?" + query

    def _ws_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # -- tenants and workers ----------------------------------------------------

    def create_tenant(self, name: str, weight: float = 1.0) -> dict[str, Any]:
        """Create a tenant (admin); the answer holds its token, shown only now."""
        body = {"name": name, "weight": weight}
        tenant: dict[str, Any] = self.request("POST", "/api/v1/tenants", body=body, retry=False)
        return tenant

    def tenants(self) -> list[dict[str, Any]]:
        """Tenants with weights and queued jobs."""
        return list(self.request("GET", "/api/v1/tenants")["tenants"])

    def worker_token(self) -> str:
        """Issue a worker token (admin)."""
        return str(self.request("POST", "/api/v1/workers/tokens", retry=False)["token"])

    def workers(self) -> list[dict[str, Any]]:
        """Registered workers."""
        return list(self.request("GET", "/api/v1/workers")["workers"])

    def drain(self, name: str) -> dict[str, Any]:
        """Stop giving a worker new work."""
        worker: dict[str, Any] = self.request("POST", f"/api/v1/workers/{name}/drain")
        return worker


def _with_key(spec: JobSpec | Mapping[str, Any]) -> dict[str, Any]:
    """A submit body with an idempotency key, so that a retried submit is stored once."""
    body = (
        spec.model_dump(mode="json", exclude_none=True) if isinstance(spec, JobSpec) else dict(spec)
    )
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return body
