"""Opening a store: engines for SQLite or PostgreSQL, migrations, the writer and readers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool, QueuePool

from o11n.errors import BadRequest
from o11n.store.migrations import migrate
from o11n.store.writer import GroupCommitWriter

P = ParamSpec("P")
T = TypeVar("T")

# synchronous=FULL (the default): a commit is fsynced before the submit is
# acknowledged, so an acknowledged job survives kill -9 and power loss alike.
# NORMAL: in WAL mode a commit reaches the OS before it is acknowledged, which
# survives kill -9 of the scheduler but not a power cut; commits cost less.
SQLITE_SYNC_MODES = ("full", "normal")
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=OFF",
)


def engine_url(db: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL for `--db` (a postgresql:// or sqlite:// URL), default SQLite in data."""
    if not db:
        return f"sqlite:///{data_dir / 'o11n.db'}"
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    if db.startswith(("postgresql+psycopg://", "sqlite:///")):
        return db
    raise BadRequest(f"unsupported database URL {db!r}: use postgresql://... or sqlite:///PATH")


def _sqlite_engine(url: str, writer: bool, sync: str) -> Engine:
    args: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if writer:
        engine = create_engine(url, poolclass=NullPool, **args)
    else:
        engine = create_engine(url, poolclass=QueuePool, pool_size=4, **args)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        for pragma in (*SQLITE_PRAGMAS, f"PRAGMA synchronous={sync.upper()}"):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


class Database:
    """The engines of one store: a single writer and a pool of readers."""

    def __init__(self, url: str, *, sqlite_sync: str = "full") -> None:
        if sqlite_sync not in SQLITE_SYNC_MODES:
            raise BadRequest(f"sqlite sync must be one of {', '.join(SQLITE_SYNC_MODES)}")
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(url, writer=True, sync=sqlite_sync)
            self.read_engine = _sqlite_engine(url, writer=False, sync=sqlite_sync)
        else:
            self.write_engine = create_engine(url, poolclass=NullPool)
            self.read_engine = create_engine(url, pool_size=4, max_overflow=4)
        with self.write_engine.begin() as conn:
            self.schema_version = migrate(conn)
        self.writer = GroupCommitWriter(self.write_engine)
        self.writer.start()

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, ...)` in the writer's next transaction; return once committed."""
        return await self.writer.run(lambda conn: fn(conn, *args, **kwargs))

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, ...)` on a reader connection in a thread."""
        return await asyncio.to_thread(functools.partial(self.read_now, fn, *args, **kwargs))

    def read_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, ...)` on a reader connection, blocking (start-up and tests)."""
        with self.read_engine.connect() as conn:
            return fn(conn, *args, **kwargs)

    def insert_ignore(self, table: Table) -> Insert:
        """An INSERT that skips rows whose key already exists."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement: Insert = dialect.insert(table).on_conflict_do_nothing()
        return statement

    def max_id(self, column: Any) -> int:
        """The largest value of an id column (0 when empty)."""
        with self.read_engine.connect() as conn:
            return int(conn.execute(select(func.max(column))).scalar() or 0)

    def close(self) -> None:
        """Finish pending writes and release connections."""
        self.writer.stop()
        self.write_engine.dispose()
        self.read_engine.dispose()
