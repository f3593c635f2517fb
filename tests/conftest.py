"""Shared fixtures: stores on SQLite and on the PostgreSQL server at 127.0.0.1:5432."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from o11n.client import Client
from tests.servers import ServerProcess

PG_ADMIN_URL = os.environ.get("O11N_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI nothing may be skipped: a missing tool is a failure, not a skip."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped:
        reporter.write_line(f"CI: {len(skipped)} tests were skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


EXIT_GRACE = 60.0  # seconds the interpreter may take to end once the tests have


def pytest_unconfigure(config: pytest.Config) -> None:
    """A thread left blocked by a test (a read nobody shuts) would hold the interpreter's
    exit for ever, and CI would end at its own time limit with nothing to show. Past
    EXIT_GRACE such threads' stacks are printed and the run fails."""

    def give_up() -> None:
        left = [t.name for t in threading.enumerate() if not t.daemon and t.is_alive()]
        print(f"\ntests: the run did not exit; threads left: {left}", file=sys.stderr)
        faulthandler.dump_traceback(sys.stderr)
        os._exit(int(pytest.ExitCode.TESTS_FAILED))

    timer = threading.Timer(EXIT_GRACE, give_up)
    timer.daemon = True
    timer.start()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"o11n_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'o11n.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, server.token, retries=2) as client:
        yield client
