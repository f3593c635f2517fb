"""Service rows: each service file as last applied."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, select

from o11n.core.services import ServiceSpec
from o11n.store.schema import services


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """A stored service."""

    tenant: str
    spec: ServiceSpec
    created_at: float
    updated_at: float


class ServiceStore:
    """Reads and writes of services."""

    def save(self, conn: Connection, tenant: str, spec: ServiceSpec, now: float) -> bool:
        """Store a service as applied; True when it is new."""
        where = (services.c.namespace == spec.namespace) & (services.c.name == spec.name)
        values = {"tenant": tenant, "spec": spec.model_dump_json(), "updated_at": now}
        if conn.execute(services.update().where(where).values(**values)).rowcount:
            return False
        conn.execute(
            services.insert().values(
                namespace=spec.namespace, name=spec.name, created_at=now, **values
            )
        )
        return True

    def delete(self, conn: Connection, namespace: str, name: str) -> None:
        """Forget a service."""
        where = (services.c.namespace == namespace) & (services.c.name == name)
        conn.execute(delete(services).where(where))

    def all(self, conn: Connection) -> list[ServiceRow]:
        """Every service."""
        rows = conn.execute(select(services).order_by(services.c.namespace, services.c.name))
        return [
            ServiceRow(
                r.tenant, ServiceSpec.model_validate_json(r.spec), r.created_at, r.updated_at
            )
            for r in rows
        ]
