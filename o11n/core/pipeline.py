"""Pipelines: sequential stages of parallel substages, as a validated spec (no I/O)."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from o11n.core.jobs import (
    RETRY_BY_DEFAULT,
    EnvName,
    FailureKind,
    Model,
    Resources,
    Seconds,
    TagKey,
    TagValue,
)

StepName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")]
Scalar = str | int | float | bool
RESERVED_STAGE_NAMES = frozenset({"err_no", "msg"})


class Retry(Model):
    """How often a substage is tried again, and after which failures."""

    max: int = Field(2, ge=0, le=10, description="Retries after the first attempt.")
    when: list[FailureKind] = Field(default_factory=lambda: list(RETRY_BY_DEFAULT), max_length=4)
    exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=list)


class Cache(Model):
    """Files whose contents, with the command, make up a substage's cache key."""

    inputs: list[str] = Field(default_factory=list, max_length=256)


class Flaky(Model):
    """Run several copies at once; the first success wins."""

    copies: int = Field(1, ge=1, le=16)


class TestInfo(Model):
    """What a test substage tests (taskbook fields test_level, test_type, ...)."""

    level: str | None = None
    type: str | None = None
    method: str | None = None
    cases: list[dict[str, str]] = Field(default_factory=list)


class Substage(Model):
    """One step of a stage; the substages of a stage run in parallel."""

    name: StepName
    run: str | list[str] = Field(description="A shell script, or an argv list.")
    env: dict[EnvName, str] = Field(default_factory=dict)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    image: str | None = None
    network: bool = Field(False, description="Give the step a network (sandbox or container).")
    timeout: Seconds = 3600.0
    retry: Retry = Field(default_factory=Retry)
    artifacts: list[str] = Field(default_factory=list, max_length=256)
    cache: Cache | None = None
    matrix: dict[EnvName, list[Scalar]] = Field(default_factory=dict)
    flaky: Flaky = Field(default_factory=Flaky)
    allow_failure: bool = False
    label: str | None = None
    project: str | None = None
    hardware_mode: str | None = None
    resource_template: dict[str, Any] | None = None
    test: TestInfo | None = None

    @field_validator("run")
    @classmethod
    def _runs_something(cls, run: str | list[str]) -> str | list[str]:
        if not run or (isinstance(run, list) and not run[0]):
            raise ValueError("run must not be empty")
        return run

    @field_validator("matrix")
    @classmethod
    def _matrix_values(cls, matrix: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in matrix.items():
            if not values:
                raise ValueError(f"matrix {key} has no values")
        return matrix


class Stage(Model):
    """Substages that run in parallel; stages run one after the other."""

    name: StepName
    on_failure: Literal["abort", "continue"] = "abort"
    substages: list[Substage] = Field(min_length=1, max_length=256)


class Pipeline(Model):
    """A pipeline file."""

    name: StepName
    variables: dict[EnvName, str] = Field(default_factory=dict)
    stages: list[Stage] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _unique_names(self) -> Pipeline:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in RESERVED_STAGE_NAMES:
                raise ValueError(f"a stage cannot be named {stage.name!r} (a taskbook key)")
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}")
            seen.add(stage.name)
        names: set[str] = set()
        for stage in self.stages:
            for sub in expand(stage):
                if sub.name in names:
                    raise ValueError(f"two substages are named {sub.name!r}")
                names.add(sub.name)
        return self

    def with_variables(self, overrides: dict[str, str]) -> Pipeline:
        """The pipeline with `--var` values over its `variables`."""
        return self.model_copy(update={"variables": {**self.variables, **overrides}})


def expand(stage: Stage) -> list[Substage]:
    """A stage's substages with every matrix expanded: one per combination of values,
    named `name[k=v,...]`, with the values in its env."""
    out: list[Substage] = []
    for sub in stage.substages:
        if not sub.matrix:
            out.append(sub)
            continue
        keys = list(sub.matrix)
        for values in itertools.product(*(sub.matrix[k] for k in keys)):
            pairs = {k: _text(v) for k, v in zip(keys, values, strict=True)}
            name = f"{sub.name}[{','.join(f'{k}={v}' for k, v in pairs.items())}]"
            out.append(
                sub.model_copy(update={"name": name, "matrix": {}, "env": {**sub.env, **pairs}})
            )
    return out


def env_name(substage: str) -> str:
    """A substage name as it appears in environment variable names: upper case, with
    every other character turned into `_`."""
    return re.sub(r"[^A-Z0-9]", "_", substage.upper())


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
