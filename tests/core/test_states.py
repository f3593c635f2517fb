"""The transition table is the only way a job changes state."""

from __future__ import annotations

import pytest

from o11n.core.states import TERMINAL, TRANSITIONS, JobState, sources_of, transition
from o11n.errors import InvalidTransition


def test_terminal_states_go_nowhere() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
        with pytest.raises(InvalidTransition):
            transition(state, JobState.QUEUED)


def test_allowed_transitions() -> None:
    assert transition(JobState.QUEUED, JobState.ASSIGNED) is JobState.ASSIGNED
    assert transition(JobState.RUNNING, JobState.QUEUED) is JobState.QUEUED
    with pytest.raises(InvalidTransition, match="a queued job cannot become running"):
        transition(JobState.QUEUED, JobState.RUNNING)


def test_sources_of_cancelled() -> None:
    assert sources_of(JobState.CANCELLED) == {
        JobState.QUEUED,
        JobState.ASSIGNED,
        JobState.RUNNING,
    }
