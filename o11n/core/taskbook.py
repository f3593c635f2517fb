"""The taskbook: a pipeline compiled to the JSON that other engines (and o11n) execute.

The shape is the Research CI seed's contract: `err_no` and `msg` at the top,
then one object per stage, in order, with its own `err_no`, `msg` and the list
of `substages` (matrix expanded), each with the seed's fields (substage_name,
label, hardware_mode, project_name, stage_key, build_cate, build_id, use_k8s,
gpu_count, resource_template_name, resource_template, yaml and, for tests,
test_level, test_type, test_method, case_list). o11n adds what it needs to run
a substage itself (command, env, tags, resources, image, timeout, retry,
artifacts, cache_inputs, flaky_copies, allow_failure) and the stage's
`on_failure`. `taskbook.schema.json` beside this file is its JSON Schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from o11n.core.pipeline import RESERVED_STAGE_NAMES, Pipeline, Stage, Substage, expand
from o11n.core.units import format_size


class _Dumper(yaml.SafeDumper):
    """YAML as people write it: multi-line strings as `|` blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def compile_taskbook(pipeline: Pipeline, build_id: int = 0) -> dict[str, Any]:
    """The taskbook of a pipeline (with its variables already overridden)."""
    book: dict[str, Any] = {"err_no": 0, "msg": "success"}
    for stage in pipeline.stages:
        book[stage.name] = {
            "err_no": 0,
            "msg": "success",
            "on_failure": stage.on_failure,
            "substages": [_substage(pipeline, stage, sub, build_id) for sub in expand(stage)],
        }
    return book


def stages(book: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A taskbook's (stage name, stage) pairs, in order."""
    return [(k, v) for k, v in book.items() if k not in RESERVED_STAGE_NAMES]


def schema() -> dict[str, Any]:
    """The taskbook's JSON Schema."""
    text = resources.files("o11n.core").joinpath("taskbook.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def stage_key(name: str) -> str:
    """The short key of a stage name: lower case, words joined by `_`, at most 16 chars."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:16] or "stage"


def _substage(pipeline: Pipeline, stage: Stage, sub: Substage, build_id: int) -> dict[str, Any]:
    res = sub.resources
    entry: dict[str, Any] = {
        "substage_name": sub.name,
        "label": sub.label or stage.name,
        "hardware_mode": sub.hardware_mode
        or sub.tags.get("hardware_mode")
        or ("gpu" if res.gpu else "cpu"),
        "project_name": sub.project or pipeline.name,
        "stage_key": stage_key(stage.name),
        "build_cate": pipeline.name,
        "build_id": build_id,
        "use_k8s": sub.image is not None,
        "gpu_count": res.gpu,
        "resource_template_name": f"cpu{res.cpu:g}-mem{format_size(res.memory)}-gpu{res.gpu}",
        "resource_template": sub.resource_template
        or {"cpu": res.cpu, "memory": res.memory, "gpu": res.gpu},
        "yaml": yaml.dump(
            sub.model_dump(mode="json", exclude_defaults=True), Dumper=_Dumper, sort_keys=False
        ),
        **_execution(pipeline, sub),
    }
    if sub.image is not None:
        entry["container_name"] = sub.image
    if sub.test is not None:
        entry.update(
            test_level=sub.test.level,
            test_type=sub.test.type,
            test_method=sub.test.method,
            case_list=sub.test.cases,
        )
    return entry


def _execution(pipeline: Pipeline, sub: Substage) -> dict[str, Any]:
    return {
        "command": sub.run,
        "env": {**pipeline.variables, **sub.env},
        "tags": sub.tags,
        "resources": sub.resources.model_dump(),
        "image": sub.image,
        **({"network": True} if sub.network else {}),  # absent: no network, as before
        "timeout": sub.timeout,
        "retry": {
            "max_attempts": sub.retry.max + 1,
            "when": sub.retry.when,
            "exit_codes": sub.retry.exit_codes,
        },
        "artifacts": sub.artifacts,
        "cache_inputs": sub.cache.inputs if sub.cache else [],
        "flaky_copies": sub.flaky.copies,
        "allow_failure": sub.allow_failure,
    }
