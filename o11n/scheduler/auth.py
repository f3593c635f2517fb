"""Tokens and who holds them: the admin, a tenant, or a worker. Tokens are kept hashed.

A worker token does worker things only: it registers, leases, heartbeats and reports for
the worker names it registered, and reads and writes blobs. Every tenant's object is, to
it, another tenant's: a 404 for one object, a 403 for a listing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from o11n.errors import Forbidden, NotFound, Unauthorized
from o11n.store.accounts import TokenRow

ADMIN, TENANT, WORKER = "admin", "tenant", "worker"
TOKEN_PREFIX = {ADMIN: "o11n_adm_", TENANT: "o11n_ten_", WORKER: "o11n_wrk_"}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, for tenant tokens the tenant, for worker tokens the token's
    hash (the worker names it registers are bound to it)."""

    role: str
    tenant: str | None = None
    key: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def require(self, *roles: str) -> None:
        """Raise Forbidden unless the caller has one of `roles` (the admin always may)."""
        if self.role != ADMIN and self.role not in roles:
            raise Forbidden(f"a {self.role} token may not do this")

    def tenant_for(self, asked: str | None) -> str:
        """The tenant a job is submitted for: a tenant token's own, or what the admin names."""
        if self.role == TENANT:
            assert self.tenant is not None
            if asked not in (None, self.tenant):
                raise Forbidden("a tenant token may submit only for its own tenant")
            return self.tenant
        self.require()
        return asked or "default"

    def may_see(self, tenant: str) -> bool:
        """True if the caller may see jobs of `tenant` (a worker token sees no tenant's)."""
        return self.role == ADMIN or (self.role == TENANT and self.tenant == tenant)

    def scope(self) -> str | None:
        """The tenant whose objects a listing shows: a tenant's own, every tenant's (None)
        for the admin; Forbidden for a worker token, which lists no tenant's objects."""
        if self.role == TENANT:
            return self.tenant
        self.require()
        return None

    def check_sees(self, tenant: str, what: str) -> None:
        """NotFound unless the caller may see this tenant's object (no existence leak)."""
        if not self.may_see(tenant):
            raise NotFound(f"no {what}")


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(role: str) -> str:
    """A fresh random token, prefixed by its role so a leaked one is recognisable."""
    return TOKEN_PREFIX[role] + secrets.token_urlsafe(32)


def admin_token(data_dir: Path) -> str:
    """The admin token: $O11N_ADMIN_TOKEN, else the one in data/admin-token, made on first start."""
    from_env = os.environ.get("O11N_ADMIN_TOKEN")
    if from_env:
        return from_env
    path = data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = new_token(ADMIN)
    write_token(path, token)
    return token


def write_token(path: Path, token: str) -> None:
    """Write a token to a new file only its owner can read (an old one is replaced)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")


class TokenBook:
    """The hashes of every valid token, looked up on each request."""

    def __init__(self, admin: str) -> None:
        self._admin_hash = hash_token(admin)
        self._rows: dict[str, TokenRow] = {}

    def add(self, row: TokenRow) -> None:
        self._rows[row.hash] = row

    def authenticate(self, token: str | None) -> Principal:
        """The principal holding `token`, or Unauthorized."""
        if not token:
            raise Unauthorized("missing token: send 'Authorization: Bearer TOKEN'")
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._admin_hash):
            return Principal(ADMIN)
        row = self._rows.get(digest)
        if row is None:
            raise Unauthorized("unknown token")
        return Principal(row.role, row.tenant, row.hash if row.role == WORKER else None)
