"""The taskbook compiler: golden files, the JSON Schema, and the seed's fields."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from o11n.core.taskbook import compile_taskbook, schema, stage_key
from o11n.pipeline.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(("example", "build_id"), [("hello", 0), ("regression", 42)])
def test_compiled_examples_match_their_golden_files(example: str, build_id: int) -> None:
    book = compile_taskbook(load_file(ROOT / "examples" / f"{example}.yml"), build_id)
    golden = json.loads((GOLDEN / f"{example}.taskbook.json").read_text())
    assert book == golden  # regenerate with: o11n pipeline compile examples/X.yml > golden


@pytest.mark.parametrize("example", ["hello", "regression"])
def test_taskbooks_follow_the_schema(example: str) -> None:
    book = compile_taskbook(load_file(ROOT / "examples" / f"{example}.yml"))
    jsonschema.validate(book, schema())


def test_the_schema_refuses_a_broken_taskbook() -> None:
    book = compile_taskbook(load_file(ROOT / "examples" / "hello.yml"))
    del book["build"]["substages"][0]["command"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(book, schema())


def test_seed_fields() -> None:
    book = compile_taskbook(load_file(ROOT / "examples" / "regression.yml"), 7)
    assert list(book) == ["err_no", "msg", "compile", "test"]
    build = book["compile"]["substages"][0]
    assert (build["build_cate"], build["build_id"], build["stage_key"]) == (
        "regression",
        7,
        "compile",
    )
    assert build["resource_template_name"] == "cpu1-mem256M-gpu0" and build["use_k8s"] is False
    assert build["retry"] == {
        "max_attempts": 3,
        "when": ["lost", "timeout", "failure"],
        "exit_codes": [137],
    }
    unit = book["test"]["substages"][0]
    assert unit["substage_name"] == "unit[shard=1]" and unit["env"]["shard"] == "1"
    assert unit["test_level"] == "smoke" and unit["case_list"][0] == {"case_name": "test_build"}
    assert unit["flaky_copies"] == 2 and book["test"]["on_failure"] == "continue"


def test_stage_key() -> None:
    assert stage_key("Unit Tests (GPU)") == "unit_tests_gpu"
    assert len(stage_key("a" * 40)) == 16
