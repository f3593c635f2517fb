"""What a job is: the spec a user submits and the record o11n keeps, with their limits."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from o11n.core.constraints import NO_CONSTRAINTS, Constraints, parse_constraints
from o11n.core.states import JobState
from o11n.core.units import parse_duration, parse_size
from o11n.errors import BadRequest

MAX_COMMAND_BYTES = 128 * 1024
MAX_ENV_BYTES = 128 * 1024
MAX_ENV_VARS = 256
MAX_TAGS = 32
MAX_LABELS = 32
MAX_TIMEOUT_S = 7 * 86400
DEFAULT_TIMEOUT_S = 3600.0
MIN_CPU = 0.01  # a job's share of a core; 0 would mean no CPU limit at all

TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")]
TagValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-/:+@]{1,255}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PortName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]
OutputPath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
MAX_OUTPUTS = 256
AGENT_OPERATORS = ("LIKE", "UNLIKE", "CLUSTER", "GREATER", "LESS")


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Constraints:
    return parse_constraints(json.loads(text))


FailureKind = Literal["lost", "timeout", "failure", "error"]
RETRY_BY_DEFAULT: tuple[FailureKind, ...] = ("lost",)  # a vanished worker is not the job's fault


def _as_value_error(parse: Any) -> Any:
    def validate(value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                return parse(value)
            except BadRequest as exc:
                raise ValueError(exc.message) from None
        return value

    return validate


Size = Annotated[
    int,
    BeforeValidator(_as_value_error(parse_size)),
    Field(ge=0, le=2**50),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}),
]
Seconds = Annotated[
    float,
    BeforeValidator(_as_value_error(parse_duration)),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]


class Model(BaseModel):
    """Base of o11n's records: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Resources(Model):
    """What a job needs of a worker: cores, bytes of memory, GPUs."""

    cpu: float = Field(1.0, ge=MIN_CPU, le=4096, description=f"Cores, at least {MIN_CPU}.")
    memory: Size = 0
    gpu: int = Field(0, ge=0, le=64)

    def key(self) -> tuple[float, int, int]:
        """A hashable form, part of a job's requirement signature."""
        return (self.cpu, self.memory, self.gpu)


class RetryPolicy(Model):
    """How often a job may run, and which failures earn it another attempt."""

    max_attempts: int = Field(3, ge=1, le=100)
    when: list[FailureKind] = Field(default_factory=lambda: list(RETRY_BY_DEFAULT), max_length=4)
    exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=list, max_length=64
    )

    def retries(self, kind: FailureKind, exit_code: int | None) -> bool:
        """True when an attempt that ended this way may be followed by another."""
        if kind == "failure" and exit_code is not None and exit_code in self.exit_codes:
            return True
        return kind in self.when


class ServiceTask(Model):
    """What makes a job a service's task, set by the scheduler only (refused from clients):
    the worker gives the job its host ports (and so a network) and their env from it."""

    service: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="The service's namespace/name."
    )
    index: int = Field(ge=0, le=100_000)
    host_ip: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The agent's address, where the ports are published."
    )
    ports: dict[PortName, Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=dict, max_length=16, description="Host ports by name."
    )


class JobSpec(Model):
    """A job as submitted: what to run, where it may run, and how to treat failures."""

    command: (
        list[Annotated[str, StringConstraints(max_length=MAX_COMMAND_BYTES)]]
        | Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMAND_BYTES)]
    ) = Field(description="An argv list, or a shell script run under `sh -e`.")
    name: Name | None = None
    tenant: Name | None = Field(None, description="Only an admin may submit for another tenant.")
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=dict, max_length=MAX_ENV_VARS
    )
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)
    resources: Resources = Field(default_factory=Resources)
    priority: int = Field(0, ge=-1000, le=1000)
    timeout: Seconds = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    labels: dict[TagKey, Annotated[str, StringConstraints(max_length=255)]] = Field(
        default_factory=dict, max_length=MAX_LABELS
    )
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="Submitting the same key twice returns the first job."
    )
    constraints: Any = Field(
        None,
        description="Placement constraints on agent attributes: a list of groups (AND) of "
        "rules {name, operate, value} (OR), operators LIKE, UNLIKE, CLUSTER, GREATER, LESS; "
        "or BCS's intersectionItem/unionData form.",
    )
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        None, description="Run in this container image (a docker:// prefix is stripped)."
    )
    network: bool = Field(False, description="Give a container job a network.")
    files: Digest | None = Field(
        None,
        description="A tree in the content-addressed store, laid out in the work directory "
        "before the command starts.",
    )
    outputs: list[OutputPath] = Field(
        default_factory=list,
        max_length=MAX_OUTPUTS,
        description="Paths or globs in the work directory to store after a success; the "
        "attempt records their tree.",
    )
    outputs_mode: Literal["artifacts", "action"] = Field(
        "artifacts",
        description="artifacts: stored after a success, and each must exist; action (a build "
        "action's outputs): stored whatever the exit code, those not made left out, and the "
        "folders that hold them made before the command starts.",
    )
    workdir: OutputPath | None = Field(
        None,
        description="Run the command in this folder of the work directory (made if missing); "
        "outputs are relative to it.",
    )
    service: ServiceTask | None = Field(
        None, description="Set by the scheduler on a service's task; refused from clients."
    )

    @field_validator("command")
    @classmethod
    def _command_size(cls, command: list[str] | str) -> list[str] | str:
        if isinstance(command, list):
            if not command or not command[0]:
                raise ValueError("command must name a program")
            if sum(len(part) for part in command) > MAX_COMMAND_BYTES:
                raise ValueError(f"command is longer than {MAX_COMMAND_BYTES} bytes")
        return command

    @field_validator("env")
    @classmethod
    def _env_size(cls, env: dict[str, str]) -> dict[str, str]:
        if sum(len(k) + len(v) for k, v in env.items()) > MAX_ENV_BYTES:
            raise ValueError(f"env is larger than {MAX_ENV_BYTES} bytes")
        return env

    @field_validator("constraints")
    @classmethod
    def _agent_rules_only(cls, raw: Any) -> Any:
        try:
            parsed = parse_constraints(raw)
        except BadRequest as exc:
            raise ValueError(exc.message) from None
        for group in parsed.groups:
            for rule in group:
                if rule.operate not in AGENT_OPERATORS:
                    raise ValueError(
                        f"{rule.operate} counts a service's tasks: jobs may use "
                        f"{', '.join(AGENT_OPERATORS)}"
                    )
        return raw

    def placement(self) -> Constraints:
        """The parsed constraints (equal ones are parsed once)."""
        if self.constraints is None:
            return NO_CONSTRAINTS
        return _parse_cached(json.dumps(self.constraints, sort_keys=True))

    @field_validator("workdir")
    @classmethod
    def _relative_workdir(cls, workdir: str | None) -> str | None:
        if workdir is not None:
            parts = workdir.strip("/").split("/")
            if workdir.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise ValueError("workdir must be a relative path inside the work directory")
        return workdir

    @model_validator(mode="after")
    def _timeout_bounds(self) -> JobSpec:
        if not 0 < self.timeout <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout must be between 0 and {MAX_TIMEOUT_S:.0f} seconds")
        return self

    def display_name(self) -> str:
        """The name given, or the program's name."""
        if self.name:
            return self.name
        if isinstance(self.command, list):
            return self.command[0][:200]
        return self.command.strip().split(None, 1)[0][:200] if self.command.strip() else "script"


class Attempt(Model):
    """One run of a job on one worker, under one lease."""

    number: int
    worker: str
    state: Literal["assigned", "running", "ended"]
    lease_expires_at: float | None = None
    assigned_at: float
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    outcome: Literal["succeeded", "lost", "timeout", "failure", "error", "cancelled"] | None = None
    reason: str | None = None
    outputs: Digest | None = None


class Job(JobSpec):
    """A job as o11n records it."""

    id: int
    name: Name
    tenant: Name
    state: JobState
    attempt: int = Field(0, description="The number of the current or last attempt.")
    attempts: list[Attempt] = Field(default_factory=list)
    exit_code: int | None = None
    reason: str | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None


class Event(Model):
    """One change of a job, as the append-only event log keeps it."""

    id: int
    job_id: int
    tenant: str
    at: float
    state: JobState
    previous: JobState | None = None
    attempt: int = 0
    worker: str | None = None
    reason: str | None = None
