"""The tables, defined once for SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("weight", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # admin | tenant | worker
    Column("tenant", String(200)),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("spec", Text, nullable=False),  # JSON: command, env, tags, resources, ...
    Column("attempt", Integer, nullable=False, default=0),
    Column("exit_code", Integer),
    Column("reason", Text),
    Column("idempotency_key", String(128)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("jobs_tenant_id", "tenant", "id"),
    Index("jobs_state_id", "state", "id"),
    Index("jobs_idempotency", "tenant", "idempotency_key", unique=True),
)

# Tags and labels, one row each, so that listing by tag or label is an indexed lookup.
job_meta = Table(
    "job_meta",
    metadata,
    Column("job_id", BigInteger, nullable=False),
    Column("kind", String(5), nullable=False),  # tag | label
    Column("key", String(63), nullable=False),
    Column("value", String(255), nullable=False),
    Index("job_meta_lookup", "kind", "key", "value", "job_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("worker", String(200), nullable=False),
    Column("lease_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # assigned | running | ended
    Column("assigned_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("outcome", String(16)),
    Column("reason", Text),
    Column("outputs", String(64)),  # the tree of a success's outputs in the CAS
)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("job_id", BigInteger, nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("previous", String(16)),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(200)),
    Column("reason", Text),
    Index("events_job", "job_id", "id"),
    Index("events_tenant", "tenant", "id"),
)

logs = Table(
    "logs",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("stream", String(6), nullable=False),  # stdout | stderr
    Column("at", Float, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("tags", Text, nullable=False),  # JSON
    Column("capacity", Text, nullable=False),  # JSON: cpu, memory, gpu
    Column("registered_at", Float, nullable=False),
    Column("address", String(64)),
    Column("ports", String(32)),  # the host port range, e.g. 31000-32000
    Column("disk", BigInteger),  # free bytes where jobs run
    Column("attributes", Text),  # JSON: set by the platform team; kept across registrations
    Column("disabled", Integer),
    Column("token_hash", String(64)),  # the worker token the name is bound to (None: unbound)
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),  # running | succeeded | failed | cancelled
    Column("taskbook", Text, nullable=False),  # JSON
    Column("options", Text, nullable=False),  # JSON: dry_run, fake exit codes
    Column("summary", Text),  # JSON, once ended: the state of every stage and substage
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("pipelines_tenant_id", "tenant", "id"),
    Index("pipelines_state", "state"),
)

# The step cache: a substage's key (command, env, image, inputs) -> the job that succeeded.
step_cache = Table(
    "step_cache",
    metadata,
    Column("tenant", String(200), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("job_id", BigInteger, nullable=False),
    Column("pipeline_id", BigInteger, nullable=False),
    Column("substage", String(255), nullable=False),
    Column("outputs", String(64)),
    Column("created_at", Float, nullable=False),
)

# Long-running services: the file as applied; their tasks are jobs labelled o11n.service.
services = Table(
    "services",
    metadata,
    Column("namespace", String(63), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("spec", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The Remote Execution API's action cache: an action's digest -> its ActionResult (protobuf).
action_results = Table(
    "action_results",
    metadata,
    Column("instance", String(255), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("result", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)
