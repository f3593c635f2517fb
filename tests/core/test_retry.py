"""What becomes of a job after an attempt."""

from __future__ import annotations

from o11n.core.jobs import RetryPolicy
from o11n.core.retry import Outcome, after_attempt, classify_exit
from o11n.core.states import JobState


def test_success_ends_the_job() -> None:
    assert after_attempt(RetryPolicy(), 1, Outcome(None, 0)) is JobState.SUCCEEDED


def test_lost_attempts_retry_by_default_until_attempts_run_out() -> None:
    policy = RetryPolicy()
    assert after_attempt(policy, 1, Outcome("lost")) is JobState.QUEUED
    assert after_attempt(policy, 3, Outcome("lost")) is JobState.ERROR


def test_failures_do_not_retry_unless_asked() -> None:
    assert after_attempt(RetryPolicy(), 1, Outcome("failure", 1)) is JobState.FAILED
    policy = RetryPolicy(max_attempts=2, when=["failure"])
    assert after_attempt(policy, 1, Outcome("failure", 1)) is JobState.QUEUED
    assert after_attempt(policy, 2, Outcome("failure", 1)) is JobState.FAILED


def test_listed_exit_codes_retry() -> None:
    policy = RetryPolicy(max_attempts=3, when=[], exit_codes=[137])
    assert after_attempt(policy, 1, Outcome("failure", 137)) is JobState.QUEUED
    assert after_attempt(policy, 1, Outcome("failure", 1)) is JobState.FAILED


def test_timeouts_fail_and_errors_error() -> None:
    assert after_attempt(RetryPolicy(), 1, Outcome("timeout")) is JobState.FAILED
    assert after_attempt(RetryPolicy(), 1, Outcome("error")) is JobState.ERROR


def test_classify_exit() -> None:
    assert classify_exit(0, None) is None
    assert classify_exit(3, None) == "failure"
    assert classify_exit(None, "timeout") == "timeout"
