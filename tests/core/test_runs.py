"""A pipeline run's state machine: stage order, failure policies, flaky copies, dry runs."""

from __future__ import annotations

from typing import Any

from o11n.core.runs import PipelineRun, Step, dry_run_exit_code


def book(*stages: tuple[str, str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"err_no": 0, "msg": "success"}
    for name, policy, subs in stages:
        out[name] = {
            "err_no": 0,
            "msg": "success",
            "on_failure": policy,
            "substages": [
                {
                    "substage_name": s["name"],
                    "flaky_copies": s.get("copies", 1),
                    "allow_failure": s.get("allow_failure", False),
                }
                for s in subs
            ],
        }
    return out


def sub(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def test_stages_run_in_order_and_substages_together() -> None:
    run = PipelineRun(book(("build", "abort", [sub("a"), sub("b")]), ("test", "abort", [sub("c")])))
    assert run.ready() == [("a", 0), ("b", 0)]
    assert run.ready() == []  # already started
    run.finished("a", 0, ok=True)
    assert run.ready() == []  # b still runs
    run.finished("b", 0, ok=True)
    assert run.ready() == [("c", 0)]
    run.finished("c", 0, ok=True)
    assert run.state is Step.SUCCEEDED


def test_a_failed_abort_stage_skips_the_rest() -> None:
    run = PipelineRun(book(("build", "abort", [sub("a")]), ("test", "abort", [sub("c")])))
    run.ready()
    run.finished("a", 0, ok=False)
    assert run.ready() == []
    assert run.substage("c").state is Step.SKIPPED and run.stages[1].state is Step.SKIPPED
    assert run.state is Step.FAILED


def test_a_failed_continue_stage_lets_the_next_run_but_fails_the_pipeline() -> None:
    run = PipelineRun(book(("test", "continue", [sub("a")]), ("report", "abort", [sub("r")])))
    run.ready()
    run.finished("a", 0, ok=False)
    assert run.ready() == [("r", 0)]
    run.finished("r", 0, ok=True)
    assert run.stages[0].state is Step.FAILED and run.state is Step.FAILED


def test_allow_failure_fails_neither_stage_nor_pipeline() -> None:
    run = PipelineRun(
        book(("lint", "abort", [sub("l", allow_failure=True)]), ("test", "abort", [sub("t")]))
    )
    run.ready()
    run.finished("l", 0, ok=False)
    assert run.ready() == [("t", 0)]
    run.finished("t", 0, ok=True)
    assert run.state is Step.SUCCEEDED and run.substage("l").state is Step.FAILED


def test_flaky_first_success_wins_and_cancels_the_other_copies() -> None:
    run = PipelineRun(book(("test", "abort", [sub("f", copies=3)])))
    assert run.ready() == [("f", 0), ("f", 1), ("f", 2)]
    assert run.finished("f", 1, ok=False) == []
    assert run.finished("f", 0, ok=True) == [2]
    assert run.substage("f").copy_states == [Step.SUCCEEDED, Step.FAILED, Step.CANCELLED]
    assert run.state is Step.SUCCEEDED


def test_flaky_fails_only_when_every_copy_fails() -> None:
    run = PipelineRun(book(("test", "abort", [sub("f", copies=2)])))
    run.ready()
    run.finished("f", 0, ok=False)
    assert run.substage("f").state is Step.RUNNING
    run.finished("f", 1, ok=False)
    assert run.state is Step.FAILED


def test_cached_substages_do_not_run() -> None:
    run = PipelineRun(book(("build", "abort", [sub("a")]), ("test", "abort", [sub("b")])))
    run.cached("a")
    assert run.ready() == [("b", 0)]
    run.cached("b")
    assert run.state is Step.SUCCEEDED


def test_cancel() -> None:
    run = PipelineRun(book(("build", "abort", [sub("a")]), ("test", "abort", [sub("b")])))
    run.ready()
    run.cancel()
    assert run.state is Step.CANCELLED and run.substage("b").state is Step.CANCELLED


def test_dry_run_exit_codes_come_from_the_environment() -> None:
    env = {"O11N_FAKE_UNIT_SHARD_1__RC": "3", "O11N_FAKE_BUILD_RC": "nonsense"}
    assert dry_run_exit_code("unit[shard=1]", env) == 3
    assert dry_run_exit_code("unit[shard=2]", env) == 0
    assert dry_run_exit_code("build", env) == 1
