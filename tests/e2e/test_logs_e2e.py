"""A job's output through a real worker and scheduler: all of it stored, in order."""

from __future__ import annotations

import sys

import pytest

from o11n.client import Client
from tests.e2e.conftest import StartServer, StartWorker
from tests.e2e.jobs import log_chunks, wait_final

LINES = 500_000  # about 50 MB
PRINT_LINES = (
    "import sys\n"
    f"for i in range({LINES}):\n"
    "    sys.stdout.write(f'{i:07d} ' + 'o11n' * 23 + '\\n')\n"
)


def first_difference(got: str, expected: str) -> str:
    """Where two long texts part, in a few lines (not a 50 MB diff)."""
    at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    at = min(len(got), len(expected)) if at is None else at
    line, start = expected.count("\n", 0, at), max(0, at - 50)
    return (
        f"{len(got)} characters stored, {len(expected)} printed; they differ at {at} "
        f"(line {line}): {got[start : at + 50]!r} instead of {expected[start : at + 50]!r}"
    )


@pytest.mark.timeout(300)
def test_fifty_megabytes_of_output_are_stored_whole_and_in_order(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server()
    start_worker(server, "w1")
    expected = "".join(f"{i:07d} " + "o11n" * 23 + "\n" for i in range(LINES))
    with Client(server.url, server.token, timeout=120) as client:
        job_id = client.submit({"command": [sys.executable, "-c", PRINT_LINES]})
        assert wait_final(client, job_id, timeout=240).state == "succeeded"
        chunks = log_chunks(client, job_id)

    assert {(c["attempt"], c["stream"]) for c in chunks} == {(1, "stdout")}
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    stored = "".join(c["data"] for c in chunks)
    same = stored == expected  # not `assert stored == expected`: no 50 MB diff
    assert same, first_difference(stored, expected)
