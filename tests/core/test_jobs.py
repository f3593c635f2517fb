"""Job specs: defaults, units, and limits that keep bad input out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from o11n.core.jobs import MAX_COMMAND_BYTES, JobSpec


def test_defaults_and_units() -> None:
    spec = JobSpec(command="make -j4", resources={"memory": "2G"}, timeout="20m")
    assert spec.resources.memory == 2 * 2**30
    assert spec.timeout == 1200
    assert spec.retry.max_attempts == 3 and spec.retry.when == ["lost"]
    assert spec.display_name() == "make"


@pytest.mark.parametrize(
    "bad",
    [
        {"command": []},
        {"command": [""]},
        {"command": ""},
        {"command": ["x" * (MAX_COMMAND_BYTES + 1)]},
        {"command": ["true"], "tags": {"bad key": "v"}},
        {"command": ["true"], "tags": {"k": "has space"}},
        {"command": ["true"], "env": {"1BAD": "v"}},
        {"command": ["true"], "timeout": 0},
        {"command": ["true"], "timeout": "9999d"},
        {"command": ["true"], "priority": 5000},
        {"command": ["true"], "resources": {"memory": "lots"}},
        {"command": ["true"], "unknown": 1},
        {"command": ["true"], "retry": {"when": ["sometimes"]}},
    ],
)
def test_bad_specs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(bad)
