"""Reading jobs back through the SDK, as a user would: final states and whole logs."""

from __future__ import annotations

from typing import Any

from o11n.client import Client
from o11n.core.jobs import Job
from tests.servers import wait_for


def wait_final(client: Client, job_id: int, timeout: float = 60.0) -> Job:
    """The job once it has reached a final state."""

    def final() -> Job | None:
        job = client.get(job_id)
        return job if job.state.terminal else None

    return wait_for(final, timeout, lambda: f"job {job_id}: {client.get(job_id)!r}")


def wait_running(client: Client, job_id: int, attempt: int = 1, timeout: float = 30.0) -> Job:
    """The job once the given attempt's command has started."""

    def started() -> Job | None:
        job = client.get(job_id)
        return job if job.state == "running" and job.attempt == attempt else None

    return wait_for(started, timeout, lambda: f"job {job_id}: {client.get(job_id)!r}")


def log_chunks(client: Client, job_id: int) -> list[dict[str, Any]]:
    """Every stored log chunk of a job, of all its attempts, page by page, in order."""
    chunks: list[dict[str, Any]] = []
    position = (0, -1)
    while True:
        page = client.logs(job_id, position)
        if not page["chunks"]:
            return chunks
        chunks += page["chunks"]
        position = (page["next_attempt"], page["next_seq"])


def log_text(client: Client, job_id: int, stream: str = "stdout") -> str:
    """Everything a job wrote to one stream, in order."""
    return "".join(c["data"] for c in log_chunks(client, job_id) if c["stream"] == stream)
