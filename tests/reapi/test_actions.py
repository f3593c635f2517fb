"""Actions as jobs: the outputs a job stores are the command's literal output paths."""

from __future__ import annotations

import pytest

from o11n.cas import tree as trees
from o11n.core.jobs import MAX_OUTPUTS, MIN_CPU, JobSpec
from o11n.errors import BadRequest
from o11n.reapi import actions
from tests.reapi.client import make_action


def spec_of(**outputs: tuple[str, ...]) -> list[str]:
    made = make_action(["/bin/true"], **outputs)
    loaded = actions.Loaded("", made.digest, made.action, made.command)
    return actions.job_spec(loaded, "0" * 64).outputs


def test_output_paths_with_glob_characters_select_only_themselves() -> None:
    outputs = spec_of(output_files=("a*.txt", "x?", "[a]"), output_directories=("d**",))
    selects = trees.matcher(outputs)
    assert [p for p in ("a*.txt", "x?", "[a]", "d**/f") if not selects(p)] == []
    assert [p for p in ("ab.txt", "xa", "a", "d/f", "dx/y/z") if selects(p)] == []


def test_past_the_jobs_limit_the_top_folders_are_literal_too() -> None:
    outputs = spec_of(output_paths=tuple(f"t*/{i}" for i in range(MAX_OUTPUTS + 1)))
    selects = trees.matcher(outputs)
    assert len(outputs) == 1 and selects("t*/7") and not selects("tx/7")


def job_of(**fields: object) -> JobSpec:
    made = make_action(["/bin/true"], **fields)  # type: ignore[arg-type]
    return actions.job_spec(actions.Loaded("", made.digest, made.action, made.command), "0" * 64)


@pytest.mark.parametrize("name", ["O11N_SERVICE", "PORT_X", "O11N_HOST_IP"])
def test_an_action_setting_a_reserved_env_name_is_refused(name: str) -> None:
    with pytest.raises(BadRequest, match=name):
        job_of(env={"PATH": "/bin", name: "0.0.0.0"})


def test_min_cores_zero_reads_as_the_cpu_floor() -> None:
    assert job_of(command_platform={"min-cores": "0"}).resources.cpu == MIN_CPU
    assert job_of(command_platform={"min-cores": "2"}).resources.cpu == 2
