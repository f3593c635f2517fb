"""The lease watchdog: a separate process kills attempts past their deadline."""

from __future__ import annotations

import subprocess
import time

import pytest

from o11n.worker.watchdog import Guarded, Guards, Watchdog

pytestmark = pytest.mark.timeout(60)


def test_guards_kill_only_what_is_past_its_deadline_and_has_a_process() -> None:
    killed: list[int] = []
    guards = Guards(kill=lambda g: killed.append(g.pid))
    guards.apply("deadline 1.1 10")
    guards.apply("guard 1.1 101 group")
    guards.apply("deadline 2.1 20")
    guards.apply("guard 2.1 201 pid")
    guards.apply("deadline 3.1 5")  # not started yet: nothing to kill
    guards.apply("nonsense")
    assert guards.expire(now=15) == 5
    assert killed == [101]
    guards.apply("deadline 2.1 30")  # renewed
    assert guards.expire(now=25) == 5 and killed == [101]
    guards.apply("drop 2.1")
    assert guards.expire(now=40) is None and killed == [101]


def test_a_guard_that_comes_after_its_deadline_is_killed_at_once() -> None:
    killed: list[Guarded] = []
    guards = Guards(kill=killed.append)
    guards.apply("deadline 7.1 10")
    guards.apply("guard 7.1 700 group")
    guards.expire(now=11)
    assert [(g.pid, g.group) for g in killed] == [(700, True)]


def _victim() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "30"], start_new_session=True)


def test_the_watchdog_kills_a_process_group_at_its_deadline_unless_renewed() -> None:
    watchdog = Watchdog()
    watchdog.start()
    late, renewed = _victim(), _victim()
    try:
        now = time.monotonic()
        for key, proc in (("1.1", late), ("2.1", renewed)):
            watchdog.deadline(key, now + 1.0)
            watchdog.guard(key, proc.pid)
        for _ in range(6):
            time.sleep(0.25)
            watchdog.deadline("2.1", time.monotonic() + 1.0)
        assert late.wait(5) == -9
        assert renewed.poll() is None
    finally:
        watchdog.close()  # what it still guards dies with it
    assert renewed.wait(5) == -9


def test_everything_guarded_dies_when_the_worker_side_goes_away() -> None:
    watchdog = Watchdog()
    watchdog.start()
    victim = _victim()
    watchdog.deadline("1.1", time.monotonic() + 3600)
    watchdog.guard("1.1", victim.pid)
    assert watchdog._proc is not None and watchdog._proc.stdin is not None
    watchdog._proc.stdin.close()  # as the kernel does when the worker is killed
    assert victim.wait(5) == -9
    watchdog.close()
