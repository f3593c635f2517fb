"""schemathesis against /openapi.json of a real scheduler: no 5xx, no schema violation."""

from __future__ import annotations

import shutil
import subprocess

import httpx

from o11n.client import Client
from tests.servers import ServerProcess

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,"
    "content_type_conformance"
)


def fuzz(server: ServerProcess, token: str, examples: int) -> None:
    st = shutil.which("schemathesis") or shutil.which("st")
    assert st, "schemathesis is not installed: make install-test"
    run = subprocess.run(
        [
            st,
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(examples),
            "--request-timeout",
            "70",
            "--workers",
            "1",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    spec = httpx.get(f"{server.url}/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert f"Tested: {operations}" in run.stdout  # every route was really exercised


def test_fuzz_as_admin(server: ServerProcess) -> None:
    fuzz(server, server.token, examples=40)


def test_fuzz_as_tenant(server: ServerProcess, admin: Client) -> None:
    fuzz(server, admin.create_tenant("fuzzer")["token"], examples=15)
