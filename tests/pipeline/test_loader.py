"""Pipeline files: what loads, and errors that name the file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from o11n.core.pipeline import expand
from o11n.errors import SpecError
from o11n.pipeline.loader import load, load_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GOOD = """\
name: r
variables: {KIND: release}
stages:
  - name: build
    substages:
      - name: make
        run: make
        resources: {cpu: 2, memory: 2G}
        timeout: 20m
        retry: {max: 1, when: [failure], exit_codes: [137]}
  - name: test
    on_failure: continue
    substages:
      - name: unit
        matrix: {shard: [1, 2], py: ["3.11", "3.12"]}
        run: ./test --shard "$shard"
"""


def test_a_pipeline_loads_with_units_and_defaults() -> None:
    pipeline = load(GOOD, "p.yml")
    build, test = pipeline.stages
    make = build.substages[0]
    assert (build.on_failure, test.on_failure) == ("abort", "continue")
    assert make.resources.memory == 2 * 2**30 and make.timeout == 1200
    assert make.retry.max == 1 and make.retry.exit_codes == [137]
    assert pipeline.variables == {"KIND": "release"}


def test_matrix_expands_to_one_substage_per_combination() -> None:
    units = expand(load(GOOD).stages[1])
    assert [u.name for u in units] == [
        "unit[shard=1,py=3.11]",
        "unit[shard=1,py=3.12]",
        "unit[shard=2,py=3.11]",
        "unit[shard=2,py=3.12]",
    ]
    assert units[3].env == {"shard": "2", "py": "3.12"}


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (
            GOOD.replace("        timeout: 20m", "        timeout: soon"),
            "p.yml:9:18",
            "invalid duration 'soon'",
        ),
        (GOOD.replace("memory: 2G", "memory: lots"), "p.yml:8:37", "invalid size 'lots'"),
        (
            GOOD.replace("        run: make\n", "        run: make\n        colour: red\n"),
            "p.yml:8:9",
            "unknown key 'colour'",
        ),
        (
            GOOD.replace("  - name: test\n", "  - name: build\n"),
            "p.yml:11:11",
            "two stages are named 'build'",
        ),
        (
            GOOD + "      - name: make\n        run: again\n",
            "p.yml:17:15",
            "two substages are named 'make'",
        ),
        (GOOD.replace("name: r\n", "name: r\nname: s\n", 1), "p.yml:2:1", "duplicate key 'name'"),
        (GOOD.replace("on_failure: continue", "on_failure: maybe"), "p.yml:12:17", "on_failure"),
        (GOOD.replace("        run: make\n", ""), "p.yml:6:9", "run: Field required"),
        (GOOD.replace("  - name: test", "  - name: err_no"), "p.yml:", "taskbook key"),
        ("name: r\nstages: [\n", "p.yml:3:1", "not valid YAML"),
        ("", "p.yml:1:1", "empty"),
    ],
)
def test_errors_name_file_line_and_column(text: str, where: str, what: str) -> None:
    with pytest.raises(SpecError) as error:
        load(text, "p.yml")
    assert error.value.message.startswith(where + ("" if where.endswith(":") else ":"))
    assert what in error.value.message


def test_the_examples_load() -> None:
    names = {path.name: load_file(path).name for path in EXAMPLES.glob("*.yml")}
    assert names == {"hello.yml": "hello", "regression.yml": "regression"}


def test_a_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the pipeline"):
        load_file(tmp_path / "nope.yml")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("name: \u0095bad", "not valid YAML"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("just text", "valid dictionary"),
    ],
)
def test_hostile_input_is_a_spec_error(text: str, what: str) -> None:
    with pytest.raises(SpecError, match=what):
        load(text, "p.yml")
