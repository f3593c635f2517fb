"""Factories for whole-system runs: real schedulers and workers, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess, WorkerProcess

StartServer = Callable[..., ServerProcess]
StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start `o11n server`s (short leases by default); all are stopped afterwards."""
    started: list[ServerProcess] = []

    def start(lease_seconds: float = 3.0, **options: Any) -> ServerProcess:
        server = ServerProcess(
            tmp_path / f"data-{len(started)}", lease_seconds=lease_seconds, **options
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Start `o11n worker`s; afterwards each, and every job process it left, is killed."""
    started: list[WorkerProcess] = []

    def start(server: ServerProcess, name: str, **options: Any) -> WorkerProcess:
        worker = WorkerProcess(server, name, tmp_path / "workers", **options)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder that jobs and the test both see (for PID files and marks)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


@pytest.fixture
def pool(start_server: StartServer, start_worker: StartWorker) -> ServerProcess:
    """A scheduler with two workers of two cores each."""
    server = start_server()
    start_worker(server, "w1", cpus=2)
    start_worker(server, "w2", cpus=2)
    return server


@pytest.fixture(scope="session")
def lua_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the lua5.4 source is fetched once: pytest's cache (kept across runs) if on."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("distcc-lua5.4")
    return Path(cache.mkdir("distcc-lua5.4"))
