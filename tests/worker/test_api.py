"""The worker's API client against a real scheduler: a forgotten worker registers once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from o11n.worker.api import WorkerApi
from tests.servers import ServerProcess


async def test_calls_that_find_the_worker_forgotten_share_one_registration(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data").start()
    api = WorkerApi(server.url, server.token)
    registrations = []

    async def register() -> None:
        registrations.append(1)
        await api.call(
            "/api/v1/workers/register",
            {"name": "w1", "cpu": 1, "memory": "1G"},
            register_again=False,
        )

    api.on_unregistered = register
    try:
        answers = await asyncio.gather(
            *(api.call("/api/v1/workers/w1/heartbeat", {"attempts": []}) for _ in range(5))
        )
        assert answers == [{"stop": [], "drain": False}] * 5
        assert len(registrations) == 1
    finally:
        await api.close()
        server.stop()
