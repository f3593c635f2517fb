"""The scheduler service on a real store: submit, lease, report, expire, cancel, restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from o11n.core.jobs import JobSpec
from o11n.core.states import JobState
from o11n.errors import (
    Conflict,
    Forbidden,
    InvalidTransition,
    LeaseExpired,
    NotFound,
    NotRegistered,
)
from o11n.scheduler.attempts import Report
from o11n.scheduler.auth import Principal
from o11n.scheduler.service import Scheduler
from o11n.store.database import Database
from tests.clock import Clock

ADMIN = Principal("admin")
BIG = (8.0, 16 * 2**30, 0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sched(db_url: str, clock: Clock) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(
        Database(db_url), "admin-secret", clock=clock, lease_seconds=30, reap_interval=3600
    )
    await scheduler.start()
    yield scheduler
    await scheduler.stop()
    scheduler.db.close()


async def restart(old: Scheduler, db_url: str, clock: Clock) -> Scheduler:
    await old.stop()
    old.db.close()
    new = Scheduler(
        Database(db_url), "admin-secret", clock=clock, lease_seconds=30, reap_interval=3600
    )
    await new.start()
    return new


def spec(**fields: object) -> JobSpec:
    return JobSpec.model_validate({"command": ["true"], **fields})


async def submit(sched: Scheduler, **fields: object) -> int:
    (done,) = await sched.submit(ADMIN, [spec(**fields)])
    return done.id


async def test_submit_lease_run_succeed(sched: Scheduler) -> None:
    job_id = await submit(sched, tags={"arch": "x86_64"})
    await sched.register("w1", {"arch": "x86_64", "os": "linux"}, BIG)
    (grant,) = await sched.lease("w1", 4, wait=0)
    assert grant.id == job_id and grant.attempt == 1 and grant.spec.command == ["true"]
    await sched.started(job_id, 1, grant.lease_id, None)
    state = await sched.finished(job_id, 1, grant.lease_id, Report(exit_code=0))
    assert state is JobState.SUCCEEDED
    job = await sched.get_job(ADMIN, job_id)
    assert job.state is JobState.SUCCEEDED and job.attempts[0].outcome == "succeeded"
    events = await sched.events(ADMIN, job_id)
    assert [e.state for e in events] == ["queued", "assigned", "running", "succeeded"]


async def test_a_job_is_handed_out_once(sched: Scheduler) -> None:
    await submit(sched)
    await sched.register("w1", {}, BIG)
    await sched.register("w2", {}, BIG)
    first = await sched.lease("w1", 10, wait=0)
    second = await sched.lease("w2", 10, wait=0)
    assert len(first) == 1 and second == []


async def test_workers_get_no_more_than_their_capacity(sched: Scheduler) -> None:
    for _ in range(5):
        await submit(sched, resources={"cpu": 2, "memory": "1G"})
    await sched.register("w1", {}, (4.0, 8 * 2**30, 0))
    assert len(await sched.lease("w1", 10, wait=0)) == 2
    assert await sched.lease("w1", 10, wait=0) == []
    assert sched.free(sched.worker("w1")) == (0.0, 6 * 2**30, 0)


async def test_a_failed_job_reports_its_exit_code(sched: Scheduler) -> None:
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    state = await sched.finished(job_id, 1, grant.lease_id, Report(exit_code=3))
    assert state is JobState.FAILED
    job = await sched.get_job(ADMIN, job_id)
    assert job.exit_code == 3


async def test_retry_policy_requeues_a_failure(sched: Scheduler) -> None:
    job_id = await submit(sched, retry={"max_attempts": 2, "when": ["failure"]})
    await sched.register("w1", {}, BIG)
    (first,) = await sched.lease("w1", 1, wait=0)
    assert await sched.finished(job_id, 1, first.lease_id, Report(1)) is JobState.QUEUED
    (second,) = await sched.lease("w1", 1, wait=0)
    assert second.attempt == 2
    assert await sched.finished(job_id, 2, second.lease_id, Report(0)) is JobState.SUCCEEDED


async def test_expired_lease_requeues_and_fences_the_late_report(
    sched: Scheduler, clock: Clock
) -> None:
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    await sched.register("w2", {}, BIG)
    (old,) = await sched.lease("w1", 1, wait=0)
    await sched.started(job_id, 1, old.lease_id, None)
    clock.now += 31
    assert await sched.reap() == 1
    (new,) = await sched.lease("w2", 1, wait=0)
    assert new.attempt == 2
    with pytest.raises(LeaseExpired):
        await sched.finished(job_id, 1, old.lease_id, Report(7))
    assert (await sched.heartbeat("w1", [(job_id, 1, old.lease_id)]))[0] == [job_id]
    assert await sched.finished(job_id, 2, new.lease_id, Report(0)) is JobState.SUCCEEDED
    job = await sched.get_job(ADMIN, job_id)
    assert [(a.worker, a.outcome) for a in job.attempts] == [("w1", "lost"), ("w2", "succeeded")]
    assert sched.metrics.leases_expired._value.get() == 1


async def test_a_lost_worker_gives_its_jobs_back_at_once(sched: Scheduler) -> None:
    """A reclaimed spot instance: no waiting for the lease; the job runs elsewhere."""
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    await sched.register("w2", {}, BIG)
    (old,) = await sched.lease("w1", 1, wait=0)
    await sched.started(job_id, 1, old.lease_id, None)
    assert await sched.lose_worker("w1", "spot instance reclaimed") == 1
    assert await sched.lease("w1", 1, wait=0) == []  # no more work for it
    (new,) = await sched.lease("w2", 1, wait=0)
    assert new.attempt == 2
    with pytest.raises(LeaseExpired):
        await sched.finished(job_id, 1, old.lease_id, Report(0))
    job = await sched.get_job(ADMIN, job_id)
    assert (job.attempts[0].outcome, job.attempts[0].reason) == ("lost", "spot instance reclaimed")


async def test_heartbeats_keep_a_lease(sched: Scheduler, clock: Clock) -> None:
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    for _ in range(5):
        clock.now += 20
        assert (await sched.heartbeat("w1", [(job_id, 1, grant.lease_id)]))[0] == []
        assert await sched.reap() == 0


async def test_lost_attempts_end_in_error_when_retries_run_out(
    sched: Scheduler, clock: Clock
) -> None:
    job_id = await submit(sched, retry={"max_attempts": 1})
    await sched.register("w1", {}, BIG)
    await sched.lease("w1", 1, wait=0)
    clock.now += 31
    await sched.reap()
    job = await sched.get_job(ADMIN, job_id)
    assert job.state is JobState.ERROR and "lease expired" in (job.reason or "")


async def test_cancel_queued_and_running(sched: Scheduler) -> None:
    queued = await submit(sched)
    running = await submit(sched)
    await sched.register("w1", {}, (1.0, 2**30, 0))
    (grant,) = await sched.lease("w1", 1, wait=0)
    assert grant.id == queued
    assert await sched.cancel(ADMIN, running) is JobState.CANCELLED
    assert await sched.lease("w1", 1, wait=0) == []
    await sched.cancel(ADMIN, queued)
    assert (await sched.heartbeat("w1", [(queued, 1, grant.lease_id)]))[0] == [queued]
    assert await sched.finished(queued, 1, grant.lease_id, Report(0)) is JobState.CANCELLED
    assert (await sched.get_job(ADMIN, queued)).state is JobState.CANCELLED
    with pytest.raises(InvalidTransition):
        await sched.cancel(ADMIN, queued)


async def test_tenants_see_only_their_own_jobs(sched: Scheduler) -> None:
    await sched.create_tenant("a", 1)
    await sched.create_tenant("b", 1)
    alice, bob = Principal("tenant", "a"), Principal("tenant", "b")
    (job,) = await sched.submit(alice, [spec()])
    with pytest.raises(NotFound):
        await sched.get_job(bob, job.id)
    with pytest.raises(NotFound):
        await sched.cancel(bob, job.id)
    with pytest.raises(Forbidden):
        await sched.submit(bob, [spec(tenant="a")])
    assert await sched.list_jobs(bob, _all()) == []
    assert [j.id for j in await sched.list_jobs(alice, _all())] == [job.id]


async def test_unknown_tenant_is_not_found(sched: Scheduler) -> None:
    with pytest.raises(NotFound):
        await sched.submit(ADMIN, [spec(tenant="nobody")])


async def test_restart_keeps_queued_and_running_jobs(
    sched: Scheduler, db_url: str, clock: Clock
) -> None:
    queued = await submit(sched, priority=3, tags={"arch": "x86_64"})
    running = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    assert grant.id == queued or grant.id == running
    sched = await restart(sched, db_url, clock)
    try:
        # the running attempt goes on: its worker reports within the lease
        assert await sched.finished(grant.id, 1, grant.lease_id, Report(0)) is JobState.SUCCEEDED
        await sched.register("w2", {"arch": "x86_64"}, BIG)
        (other,) = await sched.lease("w2", 5, wait=0)
        assert {other.id, grant.id} == {queued, running}
    finally:
        await sched.stop()
        sched.db.close()


async def test_stale_report_after_restart_is_refused(
    sched: Scheduler, db_url: str, clock: Clock
) -> None:
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    sched = await restart(sched, db_url, clock)
    try:
        clock.now += 31
        await sched.reap()
        with pytest.raises(Conflict):
            await sched.finished(job_id, 1, grant.lease_id, Report(0))
        assert job_id in sched.index
    finally:
        await sched.stop()
        sched.db.close()


async def test_long_poll_wakes_on_submit(sched: Scheduler) -> None:
    import asyncio

    await sched.register("w1", {}, BIG)
    waiting = asyncio.create_task(sched.lease("w1", 1, wait=10))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    job_id = await submit(sched)
    (grant,) = await asyncio.wait_for(waiting, 5)
    assert grant.id == job_id


async def test_drained_worker_gets_nothing(sched: Scheduler) -> None:
    await submit(sched)
    await sched.register("w1", {}, BIG)
    sched.drain("w1")
    assert await sched.lease("w1", 1, wait=1) == []


async def test_logs_are_stored_once_and_readable(sched: Scheduler) -> None:
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    chunks = [(0, "stdout", b"hello\n"), (1, "stderr", b"oops\n")]
    assert await sched.append_logs(job_id, 1, grant.lease_id, chunks) == 2
    assert await sched.append_logs(job_id, 1, grant.lease_id, chunks) == 0
    got = await sched.read_logs(ADMIN, job_id)
    assert [(c.stream, c.data) for c in got] == [("stdout", b"hello\n"), ("stderr", b"oops\n")]


def _all():  # type: ignore[no-untyped-def]
    from o11n.store.jobs import JobFilter

    return JobFilter()


@pytest.fixture(autouse=True)
def _no_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


async def test_a_waiting_heartbeat_returns_at_once_on_cancel(sched: Scheduler) -> None:
    import asyncio

    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    beat = asyncio.create_task(sched.heartbeat("w1", [(job_id, 1, grant.lease_id)], wait=30))
    await asyncio.sleep(0.05)
    assert not beat.done()
    await sched.cancel(ADMIN, job_id)
    assert await asyncio.wait_for(beat, 2) == ([job_id], False)


async def test_a_waiting_heartbeat_returns_on_drain(sched: Scheduler) -> None:
    import asyncio

    await sched.register("w1", {}, BIG)
    beat = asyncio.create_task(sched.heartbeat("w1", [], wait=30))
    await asyncio.sleep(0.05)
    sched.drain("w1")
    assert await asyncio.wait_for(beat, 2) == ([], True)


async def test_batched_reports_start_and_end_attempts(sched: Scheduler) -> None:
    from o11n.scheduler.attempts import AttemptReport

    ids = [await submit(sched) for _ in range(3)]
    await sched.register("w1", {}, BIG)
    grants = await sched.lease("w1", 3, wait=0)
    reports = [AttemptReport(g.id, g.attempt, g.lease_id, 1.0, Report(0)) for g in grants]
    reports.append(AttemptReport(ids[0], 1, "forged", 1.0, Report(0)))
    answers, grants = await sched.report(reports)
    assert answers[:3] == [JobState.SUCCEEDED] * 3 and grants == []
    assert isinstance(answers[3], str) and "no longer holds a lease" in answers[3]
    events = await sched.events(ADMIN, ids[1])
    assert [e.state for e in events] == ["queued", "assigned", "running", "succeeded"]


async def test_a_lost_report_requeues_the_job(sched: Scheduler) -> None:
    job_id = await submit(sched)
    await sched.register("w1", {}, BIG)
    (grant,) = await sched.lease("w1", 1, wait=0)
    report = Report(None, kind="lost", reason="worker drained")
    assert await sched.finished(job_id, 1, grant.lease_id, report) is JobState.QUEUED


async def test_a_finished_job_wakes_its_full_workers_poll(sched: Scheduler) -> None:
    import asyncio

    first, second = await submit(sched), await submit(sched)
    await sched.register("w1", {}, (1.0, 2**30, 0))
    (grant,) = await sched.lease("w1", 5, wait=0)
    waiting = asyncio.create_task(sched.lease("w1", 5, wait=30))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # full: nothing fits
    await sched.finished(grant.id, 1, grant.lease_id, Report(0))
    (next_grant,) = await asyncio.wait_for(waiting, 2)
    assert {grant.id, next_grant.id} == {first, second}


async def test_a_silent_workers_poll_takes_no_work(sched: Scheduler, clock: Clock) -> None:
    import asyncio

    await sched.register("dead", {}, BIG)
    waiting = asyncio.create_task(sched.lease("dead", 5, wait=30))
    await asyncio.sleep(0.05)
    clock.now += 25  # no heartbeat for most of a lease: the worker is presumed gone
    await submit(sched)
    assert await asyncio.wait_for(waiting, 2) == []
    await sched.register("alive", {}, BIG)
    assert len(await sched.lease("alive", 5, wait=0)) == 1


async def test_a_worker_that_says_it_drains_gets_no_more_work(sched: Scheduler) -> None:
    await submit(sched)
    await sched.register("w1", {}, BIG)
    assert await sched.heartbeat("w1", [], draining=True) == ([], True)
    assert await sched.lease("w1", 1, wait=0) == []


async def test_a_report_refills_the_room_it_frees_in_the_same_commit(sched: Scheduler) -> None:
    from o11n.scheduler.attempts import AttemptReport

    for _ in range(5):
        await submit(sched)
    await sched.register("w1", {}, (2.0, 2**30, 0))
    first = await sched.lease("w1", 5, wait=0)
    assert len(first) == 2  # full
    reports = [AttemptReport(g.id, g.attempt, g.lease_id, 1.0, Report(0)) for g in first]
    commits = sched.db.writer.commits
    answers, grants = await sched.report(reports, "w1", max_jobs=5)
    assert answers == [JobState.SUCCEEDED] * 2 and len(grants) == 2
    assert sched.db.writer.commits == commits + 1
    assert await sched.lease("w1", 5, wait=0) == []  # still full, with the new two
    _, none = await sched.report(
        [AttemptReport(grants[0].id, 1, "forged", 1.0, Report(0))], "w1", max_jobs=5
    )
    assert none == []  # a refused report frees nothing


async def test_a_workers_name_is_bound_to_its_token_until_the_scheduler_frees_it(
    sched: Scheduler,
) -> None:
    token_a, token_b = Principal("worker", key="a" * 64), Principal("worker", key="b" * 64)
    await sched.register("elastic-1", {}, BIG, by=token_a)
    with pytest.raises(Forbidden):
        await sched.register("elastic-1", {}, BIG, by=token_b)
    with pytest.raises(Forbidden):
        sched.act_as(token_b, "elastic-1")
    sched.act_as(ADMIN, "elastic-1")
    await sched.register("elastic-1", {}, BIG, by=ADMIN)  # the admin leaves the binding be
    with pytest.raises(Forbidden):
        sched.act_as(token_b, "elastic-1")
    await sched.unbind("elastic-1")  # the autoscaler starts a new elastic-1
    with pytest.raises(NotRegistered):  # so the new worker registers, and takes the name
        sched.act_as(token_b, "elastic-1")
    await sched.register("elastic-1", {}, BIG, by=token_b)
    sched.act_as(token_b, "elastic-1")
    with pytest.raises(Forbidden):
        sched.act_as(token_a, "elastic-1")
