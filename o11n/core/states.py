"""Job states and the one table of transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum

from o11n.errors import InvalidTransition


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        """True once the job can change no more."""
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ERROR})

# Requeueing (assigned/running -> queued) is how a lost or retried attempt gives way to the next.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.ASSIGNED, JobState.CANCELLED, JobState.ERROR}),
    JobState.ASSIGNED: frozenset(
        {
            JobState.RUNNING,
            JobState.QUEUED,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.ERROR,
        }
    ),
    JobState.RUNNING: frozenset(
        {JobState.QUEUED, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ERROR}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.ERROR: frozenset(),
}


def transition(current: JobState, target: JobState) -> JobState:
    """Return `target` if a job in `current` may move there, else raise InvalidTransition."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current} job cannot become {target}")
    return target


def sources_of(target: JobState) -> frozenset[JobState]:
    """Every state from which `target` may be reached."""
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)
