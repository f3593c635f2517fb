"""What becomes of a job when an attempt ends: done, another attempt, or given up."""

from __future__ import annotations

from dataclasses import dataclass

from o11n.core.jobs import FailureKind, RetryPolicy
from o11n.core.states import JobState


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, as the worker (or the lease reaper) reports it."""

    kind: FailureKind | None  # None: the command exited 0
    exit_code: int | None = None
    reason: str | None = None


FINAL_STATE: dict[FailureKind, JobState] = {
    "failure": JobState.FAILED,
    "timeout": JobState.FAILED,
    "lost": JobState.ERROR,
    "error": JobState.ERROR,
}


def after_attempt(policy: RetryPolicy, attempt: int, outcome: Outcome) -> JobState:
    """The job's next state: succeeded, queued for another attempt, or its final failure."""
    if outcome.kind is None:
        return JobState.SUCCEEDED
    if attempt < policy.max_attempts and policy.retries(outcome.kind, outcome.exit_code):
        return JobState.QUEUED
    return FINAL_STATE[outcome.kind]


def classify_exit(exit_code: int | None, kind: FailureKind | None) -> FailureKind | None:
    """The failure kind of a finished command: a worker-named kind wins, else its exit code."""
    if kind is not None:
        return kind
    return None if exit_code == 0 else "failure"
