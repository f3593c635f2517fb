"""A pipeline run as a state machine (no I/O): which substages to start, and what their
outcomes mean for their stage and the pipeline.

Stages run in order; the substages of a stage in parallel. A stage fails when a
substage without `allow_failure` fails; a failed `abort` stage skips the stages
after it, a `continue` one does not. The pipeline fails when any substage
without `allow_failure` failed. A flaky substage runs `copies` copies at once:
the first success wins (the other copies are to be cancelled) and it fails only
when every copy failed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from o11n.core.pipeline import env_name


class Step(StrEnum):
    """The state of a substage, a stage or a whole run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CACHED = "cached"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self not in (Step.PENDING, Step.RUNNING)

    @property
    def ok(self) -> bool:
        return self in (Step.SUCCEEDED, Step.CACHED)


@dataclass
class SubstageRun:
    """One substage of a run, with its copies (one unless flaky)."""

    name: str
    stage: str
    copies: int
    allow_failure: bool
    state: Step = Step.PENDING
    copy_states: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.copy_states = [Step.PENDING] * self.copies


@dataclass
class StageRun:
    """One stage of a run."""

    name: str
    on_failure: str
    substages: list[SubstageRun]
    state: Step = Step.PENDING


class PipelineRun:
    """The progress of one run of a taskbook."""

    def __init__(self, book: Mapping[str, Any]) -> None:
        self.stages = [
            StageRun(
                name,
                stage.get("on_failure", "abort"),
                [
                    SubstageRun(
                        sub["substage_name"],
                        name,
                        sub.get("flaky_copies", 1),
                        sub.get("allow_failure", False),
                    )
                    for sub in stage["substages"]
                ],
            )
            for name, stage in book.items()
            if name not in ("err_no", "msg")
        ]
        self._by_name = {s.name: s for stage in self.stages for s in stage.substages}
        self._current = 0

    @property
    def state(self) -> Step:
        """Running until every stage is done; then failed if any substage that may not
        fail did, else succeeded."""
        if any(stage.state is Step.CANCELLED for stage in self.stages):
            return Step.CANCELLED
        if not all(stage.state.done for stage in self.stages):
            return Step.RUNNING
        failed = any(
            s.state is Step.FAILED and not s.allow_failure
            for stage in self.stages
            for s in stage.substages
        )
        return Step.FAILED if failed else Step.SUCCEEDED

    def substage(self, name: str) -> SubstageRun:
        """A substage by name."""
        return self._by_name[name]

    def ready(self) -> list[tuple[str, int]]:
        """(substage, copy) pairs to start now; they are marked running."""
        stage = self._stage()
        if stage is None:
            return []
        stage.state = Step.RUNNING
        started = []
        for sub in stage.substages:
            for copy, state in enumerate(sub.copy_states):
                if state is Step.PENDING and not sub.state.done:
                    sub.copy_states[copy] = Step.RUNNING
                    sub.state = Step.RUNNING
                    started.append((sub.name, copy))
        return started

    def resumed(self, name: str, copy: int) -> None:
        """A copy found started (after a restart): mark it running, as `ready()` did."""
        stage, sub = self._stage(), self._by_name[name]
        if stage is None or sub not in stage.substages:
            raise ValueError(f"{name} is not in the stage that runs now")
        stage.state = Step.RUNNING
        if not sub.state.done:
            sub.state = Step.RUNNING
        sub.copy_states[copy] = Step.RUNNING

    def cached(self, name: str) -> None:
        """A pending substage whose result is reused from an earlier run."""
        sub = self._by_name[name]
        sub.state = Step.CACHED
        sub.copy_states = [Step.CACHED] * sub.copies
        self._advance()

    def finished(self, name: str, copy: int, ok: bool) -> list[int]:
        """A copy ended; returns the copies of this substage to cancel (the first success
        wins)."""
        sub = self._by_name[name]
        sub.copy_states[copy] = Step.SUCCEEDED if ok else Step.FAILED
        cancel: list[int] = []
        if ok and not sub.state.done:
            sub.state = Step.SUCCEEDED
            cancel = [i for i, s in enumerate(sub.copy_states) if s is Step.RUNNING]
            for i in cancel:
                sub.copy_states[i] = Step.CANCELLED
        elif all(s is Step.FAILED for s in sub.copy_states):
            sub.state = Step.FAILED
        self._advance()
        return cancel

    def cancel(self) -> None:
        """Stop the run: what has not ended is cancelled."""
        for stage in self.stages:
            for sub in stage.substages:
                if not sub.state.done:
                    sub.state = Step.CANCELLED
            if not stage.state.done:
                stage.state = Step.CANCELLED

    def _stage(self) -> StageRun | None:
        return self.stages[self._current] if self._current < len(self.stages) else None

    def _advance(self) -> None:
        stage = self._stage()
        if stage is None or not all(s.state.done for s in stage.substages):
            return
        failed = any(s.state is Step.FAILED and not s.allow_failure for s in stage.substages)
        stage.state = Step.FAILED if failed else Step.SUCCEEDED
        self._current += 1
        if failed and stage.on_failure == "abort":
            for later in self.stages[self._current :]:
                later.state = Step.SKIPPED
                for sub in later.substages:
                    sub.state = Step.SKIPPED
                    sub.copy_states = [Step.SKIPPED] * sub.copies
            self._current = len(self.stages)


def dry_run_exit_code(substage: str, environ: Mapping[str, str] | None = None) -> int:
    """A dry run's outcome of a substage: 0, or the code in O11N_FAKE_<SUBSTAGE>_RC."""
    env = os.environ if environ is None else environ
    value = env.get(f"O11N_FAKE_{env_name(substage)}_RC", "0")
    try:
        return int(value)
    except ValueError:
        return 1
