"""Tenants, API tokens (stored hashed) and registered workers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from o11n.store.database import Database
from o11n.store.schema import tenants, tokens, workers


@dataclass(frozen=True, slots=True)
class TenantRow:
    """A tenant and its fair-share weight."""

    name: str
    weight: float
    created_at: float


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token's hash and what it may do."""

    hash: str
    role: str  # admin | tenant | worker
    tenant: str | None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker as last registered, with what the platform team set on it."""

    name: str
    tags: dict[str, str]
    capacity: dict[str, Any]
    registered_at: float
    address: str | None = None
    ports: str | None = None
    disk: int | None = None
    attributes: dict[str, str | float] = field(default_factory=dict)
    disabled: bool = False
    token_hash: str | None = None  # the worker token its name is bound to


@dataclass(frozen=True, slots=True)
class Registration:
    """What a worker says of itself when it registers, and the token its name is bound to."""

    tags: dict[str, str]
    capacity: dict[str, Any]
    address: str
    ports: str
    disk: int
    token_hash: str | None = None


class AccountStore:
    """Reads and writes of tenants, tokens and workers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_tenant(self, conn: Connection, name: str, weight: float, now: float) -> TenantRow:
        """Create a tenant, or change the weight of an existing one."""
        done = conn.execute(tenants.update().where(tenants.c.name == name).values(weight=weight))
        if done.rowcount == 0:
            conn.execute(tenants.insert().values(name=name, weight=weight, created_at=now))
        row = conn.execute(select(tenants).where(tenants.c.name == name)).one()
        return TenantRow(row.name, row.weight, row.created_at)

    def tenants(self, conn: Connection) -> list[TenantRow]:
        """Every tenant, by name."""
        rows = conn.execute(select(tenants).order_by(tenants.c.name))
        return [TenantRow(r.name, r.weight, r.created_at) for r in rows]

    def add_token(
        self, conn: Connection, token_hash: str, role: str, tenant: str | None, now: float
    ) -> None:
        """Record a token's hash (idempotent)."""
        conn.execute(
            self.db.insert_ignore(tokens).values(
                hash=token_hash, role=role, tenant=tenant, created_at=now
            )
        )

    def tokens(self, conn: Connection) -> list[TokenRow]:
        """Every token hash."""
        return [TokenRow(r.hash, r.role, r.tenant) for r in conn.execute(select(tokens))]

    def save_worker(self, conn: Connection, name: str, reg: Registration, now: float) -> None:
        """Record a worker's registration (its attributes and disabled flag stay)."""
        values = {
            "tags": json.dumps(reg.tags),
            "capacity": json.dumps(reg.capacity),
            "registered_at": now,
            "address": reg.address,
            "ports": reg.ports,
            "disk": reg.disk,
            "token_hash": reg.token_hash,
        }
        done = conn.execute(workers.update().where(workers.c.name == name).values(**values))
        if done.rowcount == 0:
            conn.execute(workers.insert().values(name=name, attributes="{}", disabled=0, **values))

    def set_agent(
        self, conn: Connection, name: str, attributes: dict[str, str | float], disabled: bool
    ) -> None:
        """Store what the platform team set on an agent."""
        values = {"attributes": json.dumps(attributes), "disabled": int(disabled)}
        conn.execute(workers.update().where(workers.c.name == name).values(**values))

    def bind_worker(self, conn: Connection, name: str, token_hash: str | None) -> None:
        """Bind a worker's name to a token's hash, or (None) free it for the next one."""
        conn.execute(workers.update().where(workers.c.name == name).values(token_hash=token_hash))

    def workers(self, conn: Connection) -> list[WorkerRow]:
        """Every worker ever registered."""
        rows = conn.execute(select(workers).order_by(workers.c.name))
        return [
            WorkerRow(
                r.name,
                json.loads(r.tags),
                json.loads(r.capacity),
                r.registered_at,
                r.address,
                r.ports,
                r.disk,
                json.loads(r.attributes or "{}"),
                bool(r.disabled),
                r.token_hash,
            )
            for r in rows
        ]
