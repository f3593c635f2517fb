"""Schema migrations: an ordered list, each applied once and recorded in schema_version."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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


TASK_ENV = ("O11N_SERVICE", "O11N_TASK", "O11N_HOST_IP")  # what tasks' env held before 7


def _service_task_fields(conn: Connection) -> None:
    """Service tasks' jobs carry their ports and address in the scheduler-only `service`
    field, no longer in their env (where any job could set them). A job is taken for a
    task only if it has the task labels of a stored service of its own tenant."""
    services = {
        (r.namespace + "/" + r.name, r.tenant)
        for r in conn.execute(
            select(schema.services.c.namespace, schema.services.c.name, schema.services.c.tenant)
        )
    }
    jobs = schema.jobs
    rows = conn.execute(
        select(jobs.c.id, jobs.c.tenant, jobs.c.spec).where(jobs.c.spec.like("%O11N_SERVICE%"))
    ).all()
    for row in rows:
        spec = _as_task(json.loads(row.spec), row.tenant, services)
        if spec is not None:
            conn.execute(jobs.update().where(jobs.c.id == row.id).values(spec=json.dumps(spec)))


def _as_task(
    spec: dict[str, Any], tenant: str, services: set[tuple[str, str]]
) -> dict[str, Any] | None:
    """An old task's spec with its `service` field, or None if it is no service's task."""
    env, labels = spec.get("env") or {}, spec.get("labels") or {}
    key = env.get("O11N_SERVICE")
    task = labels.get("o11n.task", "")
    if labels.get("o11n.service") != key or (key, tenant) not in services:
        return None
    if not task.isdigit() or not env.get("O11N_HOST_IP") or spec.get("service"):
        return None
    ports = {
        name.removeprefix("PORT_"): int(value)
        for name, value in env.items()
        if name.startswith("PORT_") and value.isdigit() and 0 < int(value) < 65536
    }
    spec["service"] = {
        "service": key,
        "index": int(task),
        "host_ip": env["O11N_HOST_IP"],
        "ports": ports,
    }
    given = {*TASK_ENV, *(f"PORT_{name}" for name in ports)}
    spec["env"] = {k: v for k, v in env.items() if k not in given}
    return spec


def _worker_tokens(conn: Connection) -> None:
    """A worker's name is bound to the worker token that registered it."""
    _add_columns(conn, "workers", {"token_hash": "VARCHAR(64)"})


MIGRATIONS: list[Migration] = [
    _initial,
    _pipelines,
    _artifacts,
    _agents,
    _services,
    _action_results,
    _service_task_fields,
    _worker_tokens,
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
