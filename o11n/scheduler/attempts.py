"""What passes between the scheduler and a worker about attempts: grants, reports, endings."""

from __future__ import annotations

from dataclasses import dataclass

from o11n.core.jobs import FailureKind, JobSpec
from o11n.core.leases import Lease
from o11n.core.retry import Outcome, classify_exit
from o11n.core.states import JobState
from o11n.store.jobs import AttemptEnd, EndRow


@dataclass(frozen=True, slots=True)
class Grant:
    """A job handed to a worker, with what it needs to run and to report."""

    id: int
    tenant: str
    name: str
    attempt: int
    lease_id: str
    lease_expires_at: float
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class Report:
    """How an attempt ended, as a worker reports it."""

    exit_code: int | None
    signal: int | None = None
    kind: FailureKind | None = None  # None: judge by the exit code
    reason: str | None = None
    started_at: float | None = None
    outputs: str | None = None  # the digest of the tree of the outputs the worker stored


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """A worker's news of one attempt: it started, it ended, or both."""

    job_id: int
    attempt: int
    lease_id: str
    started_at: float | None = None
    result: Report | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    """An attempt to end: its lease, how it went, and whether it also just started."""

    lease: Lease
    outcome: Outcome
    end: AttemptEnd
    started: bool = False

    def row(self, state: JobState) -> EndRow:
        """The store's record of this ending, moving the job to `state`."""
        lease = self.lease
        previous = JobState.RUNNING if lease.running else JobState.ASSIGNED
        return EndRow(
            lease.job_id,
            lease.tenant,
            lease.attempt,
            lease.worker,
            previous,
            state,
            self.end,
            self.started,
        )


def ending_of(lease: Lease, report: Report, started: bool) -> Ending:
    kind = classify_exit(report.exit_code, report.kind)
    end = AttemptEnd(
        kind or "succeeded",
        report.exit_code,
        report.signal,
        report.reason,
        report.started_at,
        report.outputs,  # the worker stores them after a success, or any run of an action
    )
    return Ending(lease, Outcome(kind, report.exit_code, report.reason), end, started)
