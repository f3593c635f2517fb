"""The store's contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from o11n.core.jobs import JobSpec
from o11n.core.states import JobState
from o11n.store.accounts import AccountStore, Registration
from o11n.store.database import Database
from o11n.store.jobs import AttemptEnd, EndRow, JobFilter, JobStore, StartRow
from o11n.store.logs import LogChunk, LogStore
from o11n.store.migrations import MIGRATIONS, _service_task_fields, current_version


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


def spec(**fields: object) -> JobSpec:
    return JobSpec.model_validate({"command": ["true"], **fields})


def write(db: Database, fn, *args):  # type: ignore[no-untyped-def]
    return asyncio.run(db.write(fn, *args))


def test_migrations_are_recorded_and_idempotent(db: Database, db_url: str) -> None:
    assert db.schema_version == len(MIGRATIONS)
    again = Database(db_url)
    assert db.read_now(current_version) == len(MIGRATIONS)
    again.close()


def test_a_database_of_schema_2_is_brought_up_to_date(db: Database, db_url: str) -> None:
    """As an o11n of before artifacts, agents, services and the action cache left it: the
    later columns and tables absent, version 2 recorded."""
    from sqlalchemy import inspect, text

    with db.write_engine.begin() as conn:
        conn.execute(text("DROP TABLE step_cache"))
        conn.execute(text("DROP TABLE services"))
        conn.execute(text("DROP TABLE action_results"))
        conn.execute(text("ALTER TABLE attempts DROP COLUMN outputs"))
        for column in ("address", "ports", "disk", "attributes", "disabled", "token_hash"):
            conn.execute(text(f"ALTER TABLE workers DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_version SET version = 2"))
    db.close()
    upgraded = Database(db_url)
    try:
        assert upgraded.schema_version == len(MIGRATIONS)
        with upgraded.read_engine.connect() as conn:
            found = inspect(conn)
            assert "outputs" in {c["name"] for c in found.get_columns("attempts")}
            assert {"address", "attributes", "disabled", "token_hash"} <= {
                c["name"] for c in found.get_columns("workers")
            }
            assert found.has_table("step_cache") and found.has_table("services")
            assert found.has_table("action_results")
    finally:
        upgraded.close()


def test_insert_assigns_ids_and_events(db: Database) -> None:
    jobs = JobStore(db)
    done = write(db, jobs.insert, [(spec(), "t1"), (spec(name="b"), "t2")], 100.0)
    assert [d.id for d in done] == [1, 2] and all(d.created for d in done)
    assert [d.event.state for d in done] == ["queued", "queued"]
    job = db.read_now(jobs.get, 2)
    assert job is not None and job.tenant == "t2" and job.name == "b"
    assert job.state is JobState.QUEUED and job.created_at == 100.0


def test_idempotency_key_returns_the_first_job(db: Database) -> None:
    jobs = JobStore(db)
    (first,) = write(db, jobs.insert, [(spec(idempotency_key="k1"), "t")], 1.0)
    again = write(db, jobs.insert, [(spec(idempotency_key="k1"), "t"), (spec(), "t")], 2.0)
    assert again[0].id == first.id and not again[0].created
    assert again[1].created
    other_tenant = write(db, jobs.insert, [(spec(idempotency_key="k1"), "u")], 3.0)
    assert other_tenant[0].created
    twice_in_batch = write(
        db, jobs.insert, [(spec(idempotency_key="k9"), "t"), (spec(idempotency_key="k9"), "t")], 4.0
    )
    assert twice_in_batch[0].id == twice_in_batch[1].id
    assert [d.created for d in twice_in_batch] == [True, False]


def test_an_attempt_runs_and_ends_once(db: Database) -> None:
    jobs = JobStore(db)
    (job,) = write(db, jobs.insert, [(spec(), "t")], 1.0)
    (assigned,) = write(db, jobs.assign, [(job.id, "L1")], "w1", 2.0)
    assert assigned.attempt == 1 and assigned.queued_at == 1.0
    assert write(db, jobs.assign, [(job.id, "L2")], "w2", 2.5) == []  # not queued any more
    assert write(db, jobs.start_many, [StartRow(job.id, "t", 1, "w1", None)], 3.0)[0] is not None
    end = AttemptEnd("failure", exit_code=3)
    row = EndRow(job.id, "t", 1, "w1", JobState.RUNNING, JobState.FAILED, end)
    (events,) = write(db, jobs.end_many, [row], 4.0)
    assert [(e.previous, e.state) for e in events] == [("running", "failed")]
    success = EndRow(
        job.id, "t", 1, "w1", JobState.RUNNING, JobState.SUCCEEDED, AttemptEnd("succeeded", 0)
    )
    assert write(db, jobs.end_many, [success], 5.0) == [None]
    stored = db.read_now(jobs.get, job.id)
    assert stored.state is JobState.FAILED and stored.exit_code == 3
    assert stored.finished_at == 4.0
    assert [(a.number, a.worker, a.outcome) for a in stored.attempts] == [(1, "w1", "failure")]
    states = [e.state for e in db.read_now(jobs.events, job_id=job.id)]
    assert states == ["queued", "assigned", "running", "failed"]


def test_requeue_starts_a_new_attempt(db: Database) -> None:
    jobs = JobStore(db)
    (job,) = write(db, jobs.insert, [(spec(), "t")], 1.0)
    write(db, jobs.assign, [(job.id, "L1")], "w1", 2.0)
    lost = AttemptEnd("lost", reason="lease expired")
    row = EndRow(job.id, "t", 1, "w1", JobState.ASSIGNED, JobState.QUEUED, lost)
    write(db, jobs.end_many, [row], 3.0)
    (second,) = write(db, jobs.assign, [(job.id, "L2")], "w2", 4.0)
    assert second.attempt == 2 and second.queued_at == 3.0
    stale = StartRow(job.id, "t", 1, "w1", None)
    assert write(db, jobs.start_many, [stale], 5.0) == [None]  # the old attempt is fenced
    stored = db.read_now(jobs.get, job.id)
    assert [a.outcome for a in stored.attempts] == ["lost", None]


def test_cancel_only_from_the_expected_state(db: Database) -> None:
    jobs = JobStore(db)
    (job,) = write(db, jobs.insert, [(spec(), "t")], 1.0)
    assert write(db, jobs.cancel, job.id, "t", JobState.RUNNING, 0, 2.0, "x") is None
    assert write(db, jobs.cancel, job.id, "t", JobState.QUEUED, 0, 2.0, "by user") is not None
    assert db.read_now(jobs.head, job.id) == ("t", JobState.CANCELLED, 0)


def test_list_filters_and_cursor(db: Database) -> None:
    jobs = JobStore(db)
    items = [
        (
            spec(tags={"arch": "arm64" if i % 2 else "x86_64"}, labels={"n": str(i)}),
            "a" if i < 6 else "b",
        )
        for i in range(10)
    ]
    write(db, jobs.insert, items, 1.0)
    page = db.read_now(jobs.find, JobFilter(limit=4))
    assert [j.id for j in page] == [10, 9, 8, 7]
    nxt = db.read_now(jobs.find, JobFilter(limit=4, before_id=7))
    assert [j.id for j in nxt] == [6, 5, 4, 3]
    arm_a = db.read_now(jobs.find, JobFilter(tenant="a", tags=(("arch", "arm64"),)))
    assert [j.id for j in arm_a] == [6, 4, 2]
    labelled = db.read_now(jobs.find, JobFilter(labels=(("n", "3"),)))
    assert [j.id for j in labelled] == [4]
    assert db.read_now(jobs.find, JobFilter(states=(JobState.RUNNING,))) == []


def test_active_jobs_rebuild_memory(db: Database) -> None:
    jobs = JobStore(db)
    done = write(db, jobs.insert, [(spec(priority=i), "t") for i in range(3)], 1.0)
    write(db, jobs.assign, [(done[1].id, "L1")], "w1", 2.0)
    write(db, jobs.cancel, done[2].id, "t", JobState.QUEUED, 0, 2.0, "x")
    active = db.read_now(jobs.active)
    assert [(a.id, a.state, a.worker, a.lease_id) for a in active] == [
        (1, JobState.QUEUED, None, None),
        (2, JobState.ASSIGNED, "w1", "L1"),
    ]
    assert active[1].spec.priority == 1
    assert db.read_now(jobs.count_by_state) == {"queued": 1, "assigned": 1, "cancelled": 1}


def test_counters_continue_after_reopen(db: Database, db_url: str) -> None:
    jobs = JobStore(db)
    write(db, jobs.insert, [(spec(), "t")], 1.0)
    db.close()
    reopened = Database(db_url)
    try:
        (job,) = write(reopened, JobStore(reopened).insert, [(spec(), "t")], 2.0)
        assert job.id == 2 and job.event.id == 2
    finally:
        reopened.close()
    db.writer = reopened.writer  # the fixture closes `db` again; closing twice is harmless


def test_log_chunks_are_stored_once_in_order(db: Database) -> None:
    logs = LogStore(db)
    chunks = [LogChunk(1, 1, seq, "stdout", 1.0, f"line {seq}\n".encode()) for seq in range(3)]
    assert len(write(db, logs.append, chunks[:2])) == 2
    assert [c.seq for c in write(db, logs.append, chunks)] == [2]  # a re-sent batch
    write(db, logs.append, [LogChunk(1, 2, 0, "stderr", 2.0, b"retry\n")])
    got = db.read_now(logs.read, 1)
    assert [(c.attempt, c.seq) for c in got] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    assert db.read_now(logs.read, 1, after=(1, 1))[0].data == b"line 2\n"


def test_tenants_tokens_workers(db: Database) -> None:
    accounts = AccountStore(db)
    write(db, accounts.add_tenant, "a", 1.0, 1.0)
    write(db, accounts.add_tenant, "a", 3.0, 2.0)
    assert [(t.name, t.weight) for t in db.read_now(accounts.tenants)] == [("a", 3.0)]
    write(db, accounts.add_token, "h1", "tenant", "a", 1.0)
    write(db, accounts.add_token, "h1", "tenant", "a", 1.0)
    assert [(t.hash, t.tenant) for t in db.read_now(accounts.tokens)] == [("h1", "a")]
    first = Registration({"arch": "x"}, {"cpu": 2}, "127.0.0.2", "31000-32000", 10)
    write(db, accounts.save_worker, "w1", first, 1.0)
    write(db, accounts.set_agent, "w1", {"city": "shenzhen", "cores": 24.0}, True)
    again = Registration({"arch": "y"}, {"cpu": 4}, "127.0.0.3", "40000-40010", 20)
    write(db, accounts.save_worker, "w1", again, 2.0)
    (worker,) = db.read_now(accounts.workers)
    assert worker.tags == {"arch": "y"} and worker.capacity == {"cpu": 4}
    assert (worker.address, worker.ports, worker.disk) == ("127.0.0.3", "40000-40010", 20)
    # what the platform team set survives the worker registering again
    assert worker.attributes == {"city": "shenzhen", "cores": 24.0} and worker.disabled


def test_a_workers_name_stays_bound_to_its_token(db: Database, db_url: str) -> None:
    accounts = AccountStore(db)
    bound = Registration({}, {"cpu": 2}, "127.0.0.2", "31000-32000", 0, token_hash="a" * 64)
    write(db, accounts.save_worker, "w1", bound, 1.0)
    write(db, accounts.save_worker, "w2", Registration({}, {"cpu": 2}, "127.0.0.3", "1-2", 0), 1.0)
    write(db, accounts.set_agent, "w1", {"city": "x"}, False)
    db.close()
    reopened = Database(db_url)
    try:
        found = {w.name: w for w in reopened.read_now(AccountStore(reopened).workers)}
        assert found["w1"].token_hash == "a" * 64 and found["w2"].token_hash is None
        write(reopened, AccountStore(reopened).bind_worker, "w1", None)
        (freed,) = [w for w in reopened.read_now(AccountStore(reopened).workers) if w.name == "w1"]
        assert freed.token_hash is None and freed.attributes == {"city": "x"}
    finally:
        reopened.close()


def test_stored_service_tasks_move_their_ports_out_of_env(db: Database, db_url: str) -> None:
    """A scheduler upgraded on a database whose service tasks' jobs carry PORT_*,
    O11N_HOST_IP and O11N_SERVICE in their env: the tasks get the `service` field; a
    tenant's job that only forged that env does not."""
    from sqlalchemy import text

    from o11n.core.services import ServiceSpec
    from o11n.store.services import ServiceStore

    svc = ServiceSpec.model_validate({"name": "web", "namespace": "build", "command": "x"})
    write(db, ServiceStore().save, "team", svc, 1.0)
    task_env = {
        "MODE": "fast",
        "PORT_HTTP": "31005",
        "O11N_HOST_IP": "127.0.0.9",
        "O11N_SERVICE": "build/web",
        "O11N_TASK": "2",
    }
    labels = {"o11n.service": "build/web", "o11n.task": "2", "o11n.version": "v1"}
    forged = {"PORT_X": "8080", "O11N_HOST_IP": "0.0.0.0", "O11N_SERVICE": "build/web"}
    jobs = JobStore(db)
    (task, other_tenant, unlabelled) = write(
        db,
        jobs.insert,
        [
            (spec(env=task_env, labels=labels), "team"),
            (spec(env=task_env, labels=labels), "mallory"),
            (spec(env=forged), "team"),
        ],
        1.0,
    )
    with db.write_engine.begin() as conn:
        before = MIGRATIONS.index(_service_task_fields)  # as a database of just before it
        conn.execute(text(f"UPDATE schema_version SET version = {before}"))
    db.close()
    upgraded = Database(db_url)
    try:
        moved = upgraded.read_now(JobStore(upgraded).get, task.id)
        assert moved is not None and moved.service is not None
        assert moved.env == {"MODE": "fast"}
        assert (moved.service.service, moved.service.index) == ("build/web", 2)
        assert (moved.service.host_ip, moved.service.ports) == ("127.0.0.9", {"HTTP": 31005})
        for job_id in (other_tenant.id, unlabelled.id):
            kept = upgraded.read_now(JobStore(upgraded).get, job_id)
            assert kept is not None and kept.service is None
    finally:
        upgraded.close()


def test_concurrent_writes_share_commits(db: Database) -> None:
    jobs = JobStore(db)

    async def many() -> list[int]:
        results = await asyncio.gather(
            *(db.write(jobs.insert, [(spec(), "t")], 1.0) for _ in range(200))
        )
        return [r[0].id for r in results]

    before = db.writer.commits
    ids = asyncio.run(many())
    assert sorted(ids) == list(range(1, 201))
    assert db.writer.commits - before < 200


def test_a_failing_write_does_not_fail_its_batch(db: Database) -> None:
    jobs = JobStore(db)

    def boom(_conn: object) -> None:
        raise RuntimeError("boom")

    async def mixed() -> list[object]:
        return await asyncio.gather(
            db.write(jobs.insert, [(spec(), "t")], 1.0),
            db.writer.run(boom),
            db.write(jobs.insert, [(spec(), "t")], 1.0),
            return_exceptions=True,
        )

    first, failed, last = asyncio.run(mixed())
    assert isinstance(failed, RuntimeError)
    assert db.read_now(jobs.count_by_state) == {"queued": 2}
    assert first[0].created and last[0].created  # type: ignore[index]


@pytest.mark.parametrize(("mode", "level"), [("full", 2), ("normal", 1)])
def test_sqlite_sync_mode(tmp_path: object, mode: str, level: int) -> None:
    from sqlalchemy import text

    database = Database(f"sqlite:///{tmp_path}/s.db", sqlite_sync=mode)
    try:
        assert database.read_now(lambda c: c.execute(text("PRAGMA synchronous")).scalar()) == level
        assert database.read_now(lambda c: c.execute(text("PRAGMA journal_mode")).scalar()) == "wal"
    finally:
        database.close()


def test_a_short_attempt_starts_and_ends_in_one_write(db: Database) -> None:
    jobs = JobStore(db)
    (job,) = write(db, jobs.insert, [(spec(), "t")], 1.0)
    write(db, jobs.assign, [(job.id, "L1")], "w1", 2.0)
    end = AttemptEnd("succeeded", exit_code=0, started_at=2.5)
    row = EndRow(job.id, "t", 1, "w1", JobState.ASSIGNED, JobState.SUCCEEDED, end, started=True)
    (events,) = write(db, jobs.end_many, [row], 3.0)
    assert [(e.previous, e.state, e.at) for e in events] == [
        ("assigned", "running", 2.5),
        ("running", "succeeded", 3.0),
    ]
    stored = db.read_now(jobs.get, job.id)
    assert stored.attempts[0].started_at == 2.5 and stored.state is JobState.SUCCEEDED


def test_ends_in_one_batch_are_fenced_one_by_one(db: Database) -> None:
    jobs = JobStore(db)
    done = write(db, jobs.insert, [(spec(), "t") for _ in range(3)], 1.0)
    write(db, jobs.assign, [(d.id, f"L{d.id}") for d in done], "w1", 2.0)
    ok = AttemptEnd("succeeded", exit_code=0)
    rows = [
        EndRow(done[0].id, "t", 1, "w1", JobState.ASSIGNED, JobState.SUCCEEDED, ok),
        EndRow(done[1].id, "t", 2, "w1", JobState.ASSIGNED, JobState.SUCCEEDED, ok),  # stale
        EndRow(done[2].id, "t", 1, "w1", JobState.RUNNING, JobState.SUCCEEDED, ok),  # wrong state
        EndRow(done[0].id, "t", 1, "w1", JobState.ASSIGNED, JobState.FAILED, ok),  # twice
    ]
    results = write(db, jobs.end_many, rows, 3.0)
    assert [r is not None for r in results] == [True, False, False, False]
    assert db.read_now(jobs.count_by_state) == {"succeeded": 1, "assigned": 2}
