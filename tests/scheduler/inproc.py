"""A scheduler app served in this process (uvicorn on a thread, real HTTP and WebSocket on
loopback), for tests of what each door lets through: a real store and CAS, no process to
start. (starlette's TestClient would need httpx2, which the project does not depend on.)"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from o11n.cas.store import CasStore
from o11n.scheduler.app import create_app
from o11n.scheduler.service import Scheduler
from o11n.store.database import Database

ADMIN_TOKEN = "o11n_adm_in-process-test"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class AppClient(httpx.Client):
    """An HTTP client of the app (admin token by default), with its WebSocket URL."""

    ws_url: str


@contextmanager
def app_client(data: Path) -> Iterator[AppClient]:
    """A scheduler on `data` (SQLite and CAS there), served on a loopback port until the
    block ends; open it again to restart it."""
    data.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{data / 'o11n.db'}")
    sched = Scheduler(db, ADMIN_TOKEN, lease_seconds=30)
    app = create_app(sched, CasStore(data / "cas"))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "the in-process scheduler did not start"
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        with AppClient(base_url=url, headers=auth(ADMIN_TOKEN), timeout=30) as client:
            client.ws_url = f"ws://127.0.0.1:{port}"
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        db.close()


def call(client: AppClient, token: str, method: str, path: str, body: Any = None) -> Any:
    """One request with `token`; the response."""
    kwargs: dict[str, Any] = {"headers": auth(token)}
    if body is not None:
        kwargs["json"] = body
    return client.request(method, path, **kwargs)


def ok(client: AppClient, token: str, method: str, path: str, body: Any = None) -> Any:
    """One request that must succeed; its JSON."""
    answer = call(client, token, method, path, body)
    assert answer.status_code < 300, answer.text
    return answer.json()


def tenant(client: AppClient, name: str) -> str:
    """A new tenant's token."""
    token: str = ok(client, ADMIN_TOKEN, "POST", "/api/v1/tenants", {"name": name})["token"]
    return token


def worker_token(client: AppClient) -> str:
    token: str = ok(client, ADMIN_TOKEN, "POST", "/api/v1/workers/tokens")["token"]
    return token
