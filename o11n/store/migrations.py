"""Schema migrations: an ordered list, each applied once and recorded in schema_version."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from o11n.store import schema

Migration = Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    later = (
        schema.schema_version,
        schema.pipelines,
        schema.step_cache,
        schema.services,
        schema.action_results,
    )
    tables = [t for t in schema.metadata.sorted_tables if t not in later]
    schema.metadata.create_all(conn, tables=tables)  # attempts.outputs included


def _pipelines(conn: Connection) -> None:
    schema.pipelines.create(conn)


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """Add the columns a table lacks (a new database has them from _initial already)."""
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, kind in columns.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def _artifacts(conn: Connection) -> None:
    """Attempts record their outputs' tree; the step cache."""
    _add_columns(conn, "attempts", {"outputs": "VARCHAR(64)"})
    schema.step_cache.create(conn)


def _agents(conn: Connection) -> None:
    """Workers as agents: address, port range, disk, attributes, disabled."""
    _add_columns(
        conn,
        "workers",
        {
            "address": "VARCHAR(64)",
            "ports": "VARCHAR(32)",
            "disk": "BIGINT",
            "attributes": "TEXT",
            "disabled": "INTEGER",
        },
    )


# Append new migrations at the end; never change what one that has shipped does.
def _services(conn: Connection) -> None:
    schema.services.create(conn)


def _action_results(conn: Connection) -> None:
    schema.action_results.create(conn)


MIGRATIONS: list[Migration] = [
    _initial,
    _pipelines,
    _artifacts,
    _agents,
    _services,
    _action_results,
]


def current_version(conn: Connection) -> int:
    """The schema version a database is at (0 for an empty one)."""
    schema.schema_version.create(conn, checkfirst=True)
    return conn.execute(select(schema.schema_version.c.version)).scalar() or 0


def migrate(conn: Connection) -> int:
    """Bring the database up to the latest schema; returns the version reached."""
    version = current_version(conn)
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this o11n "
            f"({len(MIGRATIONS)}); upgrade o11n"
        )
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        migration(conn)
        conn.execute(schema.schema_version.delete())
        conn.execute(schema.schema_version.insert().values(version=number))
    return len(MIGRATIONS)
