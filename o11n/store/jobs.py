"""Job rows and their events: the writes of a job's life and the reads that show or rebuild it.

Every write here runs on the single writer's connection (see writer.py), so the
id counters below are touched by one thread only. Each write that changes a
job's state appends its event in the same transaction and returns it, for the
scheduler to publish once the commit is done.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, select

from o11n.core.jobs import Attempt, Event, Job, JobSpec
from o11n.core.states import TERMINAL, JobState
from o11n.store.database import Database
from o11n.store.schema import attempts, events, job_meta, jobs

SPEC_EXCLUDE = {"tenant", "name", "idempotency_key"}

# Statements of the submit path, built once: building them per call cost more than running them.
INSERT_JOBS = jobs.insert()
INSERT_META = job_meta.insert()
INSERT_EVENTS = events.insert()
HEADS = select(jobs.c.id, jobs.c.attempt, jobs.c.state).where(
    jobs.c.id.in_(bindparam("ids", expanding=True))
)
START_JOBS = (
    jobs.update()
    .where(jobs.c.id == bindparam("b_id"))
    .values(state=JobState.RUNNING.value, updated_at=bindparam("b_now"))
)
START_ATTEMPTS = (
    attempts.update()
    .where(attempts.c.job_id == bindparam("b_id"), attempts.c.number == bindparam("b_attempt"))
    .values(state="running", started_at=bindparam("b_started"))
)
END_JOBS = (
    jobs.update()
    .where(jobs.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        exit_code=bindparam("b_exit"),
        reason=bindparam("b_reason"),
        updated_at=bindparam("b_now"),
        finished_at=bindparam("b_finished"),
    )
)
END_ATTEMPTS = (
    attempts.update()
    .where(attempts.c.job_id == bindparam("b_id"), attempts.c.number == bindparam("b_attempt"))
    .values(
        state="ended",
        ended_at=bindparam("b_now"),
        exit_code=bindparam("b_exit"),
        signal=bindparam("b_signal"),
        outcome=bindparam("b_outcome"),
        reason=bindparam("b_reason"),
        started_at=func.coalesce(bindparam("b_started"), attempts.c.started_at),
        outputs=bindparam("b_outputs"),
    )
)
ASSIGN_FIND = select(
    jobs.c.id, jobs.c.tenant, jobs.c.name, jobs.c.spec, jobs.c.attempt, jobs.c.updated_at
).where(jobs.c.id.in_(bindparam("ids", expanding=True)), jobs.c.state == JobState.QUEUED.value)
ASSIGN_JOBS = (
    jobs.update()
    .where(jobs.c.id == bindparam("b_id"))
    .values(
        state=JobState.ASSIGNED.value,
        attempt=bindparam("b_attempt"),
        updated_at=bindparam("b_now"),
    )
)
INSERT_ATTEMPTS = attempts.insert()
FIND_BY_KEYS = select(jobs.c.id, jobs.c.tenant, jobs.c.idempotency_key).where(
    jobs.c.tenant.in_(bindparam("tenants", expanding=True)),  # both columns constrained:
    jobs.c.idempotency_key.in_(bindparam("keys", expanding=True)),  # an index lookup
)


@dataclass(frozen=True, slots=True)
class Submitted:
    """The outcome of one submit: a new job, or the earlier one with the same idempotency key."""

    id: int
    created: bool
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class Assigned:
    """A job handed to a worker: its spec, attempt number and lease."""

    id: int
    tenant: str
    name: str
    spec: str  # JSON
    attempt: int
    lease_id: str
    queued_at: float
    event: Event


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt ended, as recorded on the attempt and the job."""

    outcome: str  # succeeded | lost | timeout | failure | error | cancelled
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    started_at: float | None = None
    outputs: str | None = None


@dataclass(frozen=True, slots=True)
class StartRow:
    """An assigned attempt whose command has started."""

    job_id: int
    tenant: str
    attempt: int
    worker: str
    started_at: float | None


@dataclass(frozen=True, slots=True)
class EndRow:
    """An attempt that ended, and the state its job moves to from `previous`."""

    job_id: int
    tenant: str
    attempt: int
    worker: str
    previous: JobState
    state: JobState
    end: AttemptEnd
    started: bool = False  # it also started since the last report


@dataclass(frozen=True, slots=True)
class ActiveJob:
    """A job the scheduler must hold in memory after a restart: queued, or leased."""

    id: int
    tenant: str
    state: JobState
    spec: JobSpec
    attempt: int
    worker: str | None
    lease_id: str | None


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What `list` selects: all given conditions hold."""

    tenant: str | None = None
    states: tuple[JobState, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    before_id: int | None = None  # the cursor: ids below this one
    limit: int = 50


class JobStore:
    """Reads and writes of jobs, attempts and events."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._next_job = db.max_id(jobs.c.id) + 1
        self._next_event = db.max_id(events.c.id) + 1

    # -- writes (writer thread) -------------------------------------------------

    def insert(
        self, conn: Connection, items: Sequence[tuple[JobSpec, str]], now: float
    ) -> list[Submitted]:
        """Insert jobs as queued; a repeated idempotency key returns the earlier job."""
        known = self._by_idempotency_key(conn, items)
        order: list[tuple[int, bool]] = []
        rows: list[dict[str, Any]] = []
        meta: list[dict[str, Any]] = []
        for spec, tenant in items:
            key = spec.idempotency_key
            if key is not None and (tenant, key) in known:
                order.append((known[(tenant, key)], False))
                continue
            job_id = self._next_job
            self._next_job += 1
            if key is not None:
                known[(tenant, key)] = job_id
            rows.append(_job_row(job_id, spec, tenant, now))
            meta.extend(_meta_rows(job_id, spec))
            order.append((job_id, True))
        made: dict[int, Event] = {}
        if rows:
            conn.execute(INSERT_JOBS, rows)
            if meta:
                conn.execute(INSERT_META, meta)
            new_events = [_event_row(r["id"], r["tenant"], now, "queued") for r in rows]
            made = {e.job_id: e for e in self._append_events(conn, new_events)}
        return [Submitted(i, created, made[i] if created else None) for i, created in order]

    def assign(
        self, conn: Connection, picks: Sequence[tuple[int, str]], worker: str, now: float
    ) -> list[Assigned]:
        """Move queued jobs to `worker` under new leases; jobs no longer queued are skipped."""
        lease_ids = dict(picks)
        found = conn.execute(ASSIGN_FIND, {"ids": list(lease_ids)}).all()
        if not found:
            return []
        updates = [{"b_id": r.id, "b_attempt": r.attempt + 1, "b_now": now} for r in found]
        conn.execute(ASSIGN_JOBS, updates)
        conn.execute(
            INSERT_ATTEMPTS,
            [
                {
                    "job_id": r.id,
                    "number": r.attempt + 1,
                    "worker": worker,
                    "lease_id": lease_ids[r.id],
                    "state": "assigned",
                    "assigned_at": now,
                }
                for r in found
            ],
        )
        evs = self._append_events(
            conn,
            [
                _event_row(r.id, r.tenant, now, "assigned", "queued", r.attempt + 1, worker)
                for r in found
            ],
        )
        return [
            Assigned(
                r.id, r.tenant, r.name, r.spec, r.attempt + 1, lease_ids[r.id], r.updated_at, ev
            )
            for r, ev in zip(found, evs, strict=True)
        ]

    def start_many(
        self, conn: Connection, rows: Sequence[StartRow], now: float
    ) -> list[Event | None]:
        """Record that assigned attempts have started; None for one that no longer holds
        its job."""
        holds = self._holding(conn, [(r.job_id, r.attempt, JobState.ASSIGNED) for r in rows])
        valid = [r for r, held in zip(rows, holds, strict=True) if held]
        if valid:
            conn.execute(START_JOBS, [{"b_id": r.job_id, "b_now": now} for r in valid])
            conn.execute(
                START_ATTEMPTS,
                [
                    {"b_id": r.job_id, "b_attempt": r.attempt, "b_started": r.started_at or now}
                    for r in valid
                ],
            )
        events = self._append_events(
            conn,
            [
                _event_row(r.job_id, r.tenant, now, "running", "assigned", r.attempt, r.worker)
                for r in valid
            ],
        )
        made = {e.job_id: e for e in events}
        return [made.get(r.job_id) if held else None for r, held in zip(rows, holds, strict=True)]

    def end_many(
        self, conn: Connection, rows: Sequence[EndRow], now: float
    ) -> list[list[Event] | None]:
        """Close attempts and move their jobs on, in one go; None for an attempt that no
        longer holds its job. A row with `started` also records the start (a short job:
        a `running` event, then the final one)."""
        holds = self._holding(conn, [(r.job_id, r.attempt, r.previous) for r in rows])
        valid = [r for r, held in zip(rows, holds, strict=True) if held]
        if valid:
            conn.execute(END_JOBS, [_end_job_params(r, now) for r in valid])
            conn.execute(END_ATTEMPTS, [_end_attempt_params(r, now) for r in valid])
        events = self._append_events(conn, [e for r in valid for e in _end_events(r, now)])
        made: dict[int, list[Event]] = {}
        for event in events:
            made.setdefault(event.job_id, []).append(event)
        return [made.get(r.job_id) if held else None for r, held in zip(rows, holds, strict=True)]

    def _holding(self, conn: Connection, claims: Sequence[tuple[int, int, JobState]]) -> list[bool]:
        """Per claim (id, attempt, state): is the job still in that attempt and state?
        Of two claims on one job only the first can hold."""
        if not claims:
            return []
        ids = [job_id for job_id, _, _ in claims]
        found = {r.id: (r.attempt, r.state) for r in conn.execute(HEADS, {"ids": ids})}
        holds = []
        for job_id, attempt, state in claims:
            holds.append(found.get(job_id) == (attempt, state.value))
            if holds[-1]:
                del found[job_id]
        return holds

    def cancel(
        self,
        conn: Connection,
        job_id: int,
        tenant: str,
        expected: JobState,
        attempt: int,
        now: float,
        reason: str,
    ) -> Event | None:
        """Cancel a job still in `expected`; None if it has moved on meanwhile."""
        done = conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.state == expected.value)
            .values(state=JobState.CANCELLED.value, reason=reason, updated_at=now, finished_at=now)
        )
        if done.rowcount == 0:
            return None
        if expected in (JobState.ASSIGNED, JobState.RUNNING):
            conn.execute(
                attempts.update()
                .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
                .values(state="ended", ended_at=now, outcome="cancelled", reason=reason)
            )
        return self._append_events(
            conn,
            [_event_row(job_id, tenant, now, "cancelled", expected.value, attempt, None, reason)],
        )[0]

    def _append_events(self, conn: Connection, rows: list[dict[str, Any]]) -> list[Event]:
        if not rows:
            return []
        for row in rows:
            row["id"] = self._next_event
            self._next_event += 1
        conn.execute(INSERT_EVENTS, rows)
        return [
            Event.model_construct(
                **{
                    **row,
                    "state": JobState(row["state"]),
                    "previous": row["previous"] and JobState(row["previous"]),
                }
            )
            for row in rows
        ]

    def _by_idempotency_key(
        self, conn: Connection, items: Sequence[tuple[JobSpec, str]]
    ) -> dict[tuple[str, str], int]:
        keys = {(tenant, spec.idempotency_key) for spec, tenant in items if spec.idempotency_key}
        if not keys:
            return {}
        rows = conn.execute(
            FIND_BY_KEYS, {"tenants": list({t for t, _ in keys}), "keys": [k for _, k in keys]}
        )
        found = {(r.tenant, r.idempotency_key): r.id for r in rows}
        return {pair: job_id for pair, job_id in found.items() if pair in keys}

    # -- reads ------------------------------------------------------------------

    def get(self, conn: Connection, job_id: int) -> Job | None:
        """One job with all its attempts."""
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            return None
        tries = conn.execute(
            select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.number)
        ).all()
        return _job(row._mapping, [_attempt(t._mapping) for t in tries])

    def head(self, conn: Connection, job_id: int) -> tuple[str, JobState, int] | None:
        """A job's tenant, state and attempt number, or None."""
        row = conn.execute(
            select(jobs.c.tenant, jobs.c.state, jobs.c.attempt).where(jobs.c.id == job_id)
        ).first()
        return None if row is None else (row.tenant, JobState(row.state), row.attempt)

    def find(self, conn: Connection, where: JobFilter) -> list[Job]:
        """Jobs matching `where`, newest first, without their attempts."""
        query: Select[Any] = select(jobs).order_by(jobs.c.id.desc()).limit(where.limit)
        if where.tenant is not None:
            query = query.where(jobs.c.tenant == where.tenant)
        if where.states:
            query = query.where(jobs.c.state.in_([s.value for s in where.states]))
        if where.before_id is not None:
            query = query.where(jobs.c.id < where.before_id)
        for kind, pairs in (("tag", where.tags), ("label", where.labels)):
            for key, value in pairs:
                query = query.where(
                    jobs.c.id.in_(
                        select(job_meta.c.job_id).where(
                            job_meta.c.kind == kind,
                            job_meta.c.key == key,
                            job_meta.c.value == value,
                        )
                    )
                )
        return [_job(row._mapping, []) for row in conn.execute(query)]

    def events(
        self,
        conn: Connection,
        *,
        job_id: int | None = None,
        tenant: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Event]:
        """Events in order, after the event id `after`."""
        query = select(events).where(events.c.id > after).order_by(events.c.id).limit(limit)
        if job_id is not None:
            query = query.where(events.c.job_id == job_id)
        if tenant is not None:
            query = query.where(events.c.tenant == tenant)
        return [Event.model_validate(dict(r._mapping)) for r in conn.execute(query)]

    def active(self, conn: Connection) -> list[ActiveJob]:
        """Every queued, assigned or running job, oldest first, to rebuild memory at start-up."""
        live = [JobState.QUEUED.value, JobState.ASSIGNED.value, JobState.RUNNING.value]
        query = (
            select(
                jobs.c.id,
                jobs.c.tenant,
                jobs.c.state,
                jobs.c.spec,
                jobs.c.attempt,
                attempts.c.worker,
                attempts.c.lease_id,
            )
            .outerjoin(
                attempts,
                (attempts.c.job_id == jobs.c.id) & (attempts.c.number == jobs.c.attempt),
            )
            .where(jobs.c.state.in_(live))
            .order_by(jobs.c.id)
        )
        return [
            ActiveJob(
                r.id,
                r.tenant,
                JobState(r.state),
                JobSpec.model_validate_json(r.spec),
                r.attempt,
                r.worker,
                r.lease_id,
            )
            for r in conn.execute(query)
        ]

    def count_by_state(self, conn: Connection) -> dict[str, int]:
        """How many jobs are in each state."""
        rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
        return {state: int(count) for state, count in rows}


def _end_job_params(r: EndRow, now: float) -> dict[str, Any]:
    return {
        "b_id": r.job_id,
        "b_state": r.state.value,
        "b_exit": r.end.exit_code,
        "b_reason": r.end.reason,
        "b_now": now,
        "b_finished": now if r.state in TERMINAL else None,
    }


def _end_attempt_params(r: EndRow, now: float) -> dict[str, Any]:
    return {
        "b_id": r.job_id,
        "b_attempt": r.attempt,
        "b_now": now,
        "b_exit": r.end.exit_code,
        "b_signal": r.end.signal,
        "b_outcome": r.end.outcome,
        "b_reason": r.end.reason,
        "b_started": r.end.started_at,
        "b_outputs": r.end.outputs,
    }


def _end_events(r: EndRow, now: float) -> list[dict[str, Any]]:
    final = _event_row(
        r.job_id, r.tenant, now, r.state.value, r.previous.value, r.attempt, r.worker, r.end.reason
    )
    if not r.started:
        return [final]
    final["previous"] = JobState.RUNNING.value
    start = _event_row(
        r.job_id,
        r.tenant,
        r.end.started_at or now,
        "running",
        r.previous.value,
        r.attempt,
        r.worker,
    )
    return [start, final]


def _job_row(job_id: int, spec: JobSpec, tenant: str, now: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "tenant": tenant,
        "name": spec.display_name(),
        "state": JobState.QUEUED.value,
        "priority": spec.priority,
        "spec": spec.model_dump_json(exclude=SPEC_EXCLUDE),
        "attempt": 0,
        "idempotency_key": spec.idempotency_key,
        "created_at": now,
        "updated_at": now,
    }


def _meta_rows(job_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    return [
        {"job_id": job_id, "kind": kind, "key": k, "value": v}
        for kind, pairs in (("tag", spec.tags), ("label", spec.labels))
        for k, v in pairs.items()
    ]


def _event_row(
    job_id: int,
    tenant: str,
    at: float,
    state: str,
    previous: str | None = None,
    attempt: int = 0,
    worker: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "tenant": tenant,
        "at": at,
        "state": state,
        "previous": previous,
        "attempt": attempt,
        "worker": worker,
        "reason": reason,
    }


def _attempt(row: Any) -> Attempt:
    # The lease id stays private: it is the worker's proof of holding the lease.
    return Attempt.model_validate({k: v for k, v in row.items() if k not in ("job_id", "lease_id")})


def _job(row: Any, tries: list[Attempt]) -> Job:
    spec = json.loads(row["spec"])
    return Job.model_validate(
        {
            **spec,
            "id": row["id"],
            "tenant": row["tenant"],
            "name": row["name"],
            "state": row["state"],
            "attempt": row["attempt"],
            "attempts": tries,
            "exit_code": row["exit_code"],
            "reason": row["reason"],
            "idempotency_key": row["idempotency_key"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "finished_at": row["finished_at"],
        }
    )
