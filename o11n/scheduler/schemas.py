"""Request and response bodies of the HTTP API (jobs themselves are in core.jobs)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, Field, IPvAnyAddress, StringConstraints, model_validator

from o11n.core.jobs import Digest, EnvName, Event, Job, JobSpec, Model, Size, TagKey, TagValue
from o11n.core.ports import parse_range
from o11n.core.states import JobState
from o11n.errors import BadRequest

MAX_BATCH = 1000
MAX_ID = 2**63 - 1
MAX_ATTEMPT = 10_000
MAX_LOG_CHUNK = 1024 * 1024
WorkerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-@:]{0,199}$")]
TenantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,62}$")]
LeaseId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _port_range(text: str) -> str:
    try:
        parse_range(text)
    except BadRequest as exc:
        raise ValueError(exc.message) from None
    return text


PortRange = Annotated[str, StringConstraints(max_length=16), AfterValidator(_port_range)]


class ErrorDetail(Model):
    code: str
    message: str


class ErrorBody(Model):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


class SubmitBatch(Model):
    jobs: list[JobSpec] = Field(min_length=1, max_length=MAX_BATCH)


class Submitted(Model):
    id: int
    created: bool = Field(description="False when the idempotency key named an earlier job.")


class SubmittedBatch(Model):
    jobs: list[Submitted]


class JobPage(Model):
    jobs: list[Job]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class CancelResult(Model):
    id: int
    state: JobState


class EventPage(Model):
    events: list[Event]


class LogChunkOut(Model):
    attempt: int
    seq: int
    stream: Literal["stdout", "stderr"]
    at: float
    data: str


class LogPage(Model):
    chunks: list[LogChunkOut]
    next_attempt: int
    next_seq: int


class TenantIn(Model):
    name: TenantName
    weight: float = Field(1.0, gt=0, le=1000)


class TenantOut(Model):
    name: str
    weight: float
    created_at: float
    queued: int = 0
    token: str | None = Field(None, description="Shown once, when the tenant is created.")


class TenantList(Model):
    tenants: list[TenantOut]


class TokenOut(Model):
    token: str


class WorkerIn(Model):
    name: WorkerName
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=64)
    cpu: float = Field(gt=0, le=4096)
    memory: Size
    gpu: int = Field(0, ge=0, le=64)
    address: IPvAnyAddress = Field(
        IPv4Address("127.0.0.1"), description="Where its services listen (the `ip` attribute)."
    )
    ports: PortRange = Field("31000-32000", description="Host ports for service tasks.")
    disk: int = Field(0, ge=0, le=2**60, description="Free bytes where jobs run.")


class AttributeIn(Model):
    agents: list[WorkerName] = Field(min_length=1, max_length=1000)
    key: TagKey
    string: TagValue | None = None
    scalar: float | None = Field(None, allow_inf_nan=False)
    delete: bool = False

    @model_validator(mode="after")
    def _one_value(self) -> AttributeIn:
        given = (self.string is not None) + (self.scalar is not None) + self.delete
        if given != 1:
            raise ValueError("give exactly one of string, scalar or delete")
        if self.key in ("hostname", "ip"):
            raise ValueError(f"{self.key} is implicit: the agent's name and address")
        return self


class AgentOut(Model):
    name: str
    ip: str
    online: bool
    disabled: bool
    draining: bool
    tags: dict[str, str]
    attributes: dict[str, str | float]
    capacity: dict[str, float]
    free: dict[str, float]
    disk: int
    ports: str = Field(description="Free host ports, as ranges.")


class AgentList(Model):
    agents: list[AgentOut]


class AgentState(Model):
    name: str
    disabled: bool


class Registered(Model):
    name: str
    lease_seconds: float
    heartbeat_seconds: float


class LeaseIn(Model):
    max_jobs: int = Field(1, ge=1, le=256)
    wait: float = Field(20.0, ge=0, le=60, description="Seconds to wait for work.")


class GrantOut(Model):
    id: int
    tenant: str
    name: str
    attempt: int
    lease_id: str
    lease_expires_at: float
    spec: JobSpec


class LeaseOut(Model):
    jobs: list[GrantOut]


class HeldAttempt(Model):
    job_id: int = Field(ge=1, le=MAX_ID)
    attempt: int = Field(ge=1, le=MAX_ATTEMPT)
    lease_id: LeaseId


class HeartbeatIn(Model):
    attempts: list[HeldAttempt] = Field(default_factory=list, max_length=4096)
    wait: float = Field(
        0.0, ge=0, le=60, description="Hold the answer up to this long unless there is news."
    )
    draining: bool = Field(False, description="The worker is stopping: give it no more work.")


class HeartbeatOut(Model):
    stop: list[int] = Field(description="Jobs to stop: cancelled, or their lease is gone.")
    drain: bool


class StartIn(Model):
    lease_id: LeaseId
    started_at: float | None = None


class ResultIn(Model):
    lease_id: LeaseId
    exit_code: int | None = Field(None, ge=-255, le=255)
    signal: int | None = Field(None, ge=1, le=64)
    kind: Literal["failure", "timeout", "error"] | None = Field(
        None, description="Leave empty to judge by the exit code."
    )
    reason: Annotated[str, StringConstraints(max_length=4096)] | None = None
    started_at: float | None = None
    outputs: Digest | None = Field(None, description="The tree of the job's outputs, stored.")


class AttemptResult(Model):
    exit_code: int | None = Field(None, ge=-255, le=255)
    signal: int | None = Field(None, ge=1, le=64)
    kind: Literal["failure", "timeout", "error", "lost"] | None = Field(
        None, description="Empty: judge by the exit code; lost: the worker gave the job up."
    )
    reason: Annotated[str, StringConstraints(max_length=4096)] | None = None
    started_at: float | None = None
    outputs: Digest | None = Field(None, description="The tree of the job's outputs, stored.")


class AttemptReportIn(Model):
    job_id: int = Field(ge=1, le=MAX_ID)
    attempt: int = Field(ge=1, le=MAX_ATTEMPT)
    lease_id: LeaseId
    started_at: float | None = Field(None, description="Set when the command has started.")
    result: AttemptResult | None = Field(None, description="Set when the attempt has ended.")


class ReportsIn(Model):
    reports: list[AttemptReportIn] = Field(min_length=1, max_length=1024)
    max_jobs: int = Field(
        0, ge=0, le=256, description="Take up to this many new jobs for the room freed."
    )


class ReportOut(Model):
    job_id: int
    ok: bool
    state: JobState | None = None
    message: str | None = None


class ReportsOut(Model):
    results: list[ReportOut]
    jobs: list[GrantOut] = Field(default_factory=list, description="New jobs for this worker.")


class ResultOut(Model):
    state: JobState


class LogChunkIn(Model):
    seq: int = Field(ge=0, le=2**31 - 1)
    stream: Literal["stdout", "stderr"] = "stdout"
    data: Annotated[str, StringConstraints(max_length=MAX_LOG_CHUNK)]


class LogAppend(Model):
    lease_id: LeaseId
    chunks: list[LogChunkIn] = Field(min_length=1, max_length=64)


class LogAppended(Model):
    stored: int


class WorkerOut(Model):
    name: str
    tags: dict[str, str]
    capacity: dict[str, float]
    free: dict[str, float]
    running: list[int]
    last_seen: float
    online: bool
    draining: bool


class WorkerList(Model):
    workers: list[WorkerOut]


class Health(Model):
    status: Literal["ok"]
    queued: int
    leased: int


JobIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="A job id.")]
AttemptPath = Annotated[int, Path(ge=1, le=MAX_ATTEMPT, description="An attempt number.")]
EventIdQuery = Annotated[int, Query(ge=0, le=MAX_ID)]


class PipelineIn(Model):
    pipeline: Annotated[str, StringConstraints(min_length=1, max_length=1024 * 1024)] = Field(
        description="The pipeline file's text (YAML or JSON)."
    )
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        "pipeline.yml", description="Named in error messages."
    )
    vars: dict[EnvName, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=dict, max_length=256, description="Overrides of `variables`."
    )
    dry_run: bool = Field(
        False, description="Run nothing: every substage ends with 0 or its fake exit code."
    )
    fake_exit_codes: dict[str, int] = Field(
        default_factory=dict,
        max_length=4096,
        description="For a dry run: O11N_FAKE_<SUBSTAGE>_RC values.",
    )
    build_id: int = Field(0, ge=0, le=MAX_ID)
    tenant: TenantName | None = None
    workspace: Digest | None = Field(
        None, description="A tree in the store: the files every substage starts with."
    )
    no_cache: bool = Field(False, description="Run every substage, cached or not.")


class PipelineCreated(Model):
    id: int


class CopyOut(Model):
    copy_: int = Field(alias="copy")
    state: str
    job_id: int | None = None


class SubstageOut(Model):
    name: str
    state: str | None = None
    copies: list[CopyOut] = Field(default_factory=list)
    artifacts: Digest | None = Field(None, description="The tree of its artifacts, stored.")
    cached_from: int | None = Field(None, description="The earlier job whose success it reuses.")
    cache_key: Digest | None = None


class StageOut(Model):
    name: str
    state: str
    substages: list[SubstageOut]


class PipelineOut(Model):
    id: int
    name: str
    tenant: str
    state: str
    dry_run: bool
    stages: list[StageOut]
    created_at: float
    finished_at: float | None = None


class PipelineList(Model):
    pipelines: list[PipelineOut]


class DigestsIn(Model):
    digests: list[Digest] = Field(max_length=100_000)


class MissingOut(Model):
    missing: list[Digest] = Field(description="The digests the store does not hold.")


class BlobOut(Model):
    digest: Digest
    size: int
    stored: bool = Field(description="False when the store held the blob already.")


class ArtifactOut(Model):
    substage: str
    path: str
    digest: Digest | None = None
    size: int = 0
    executable: bool = False
    link: str | None = None


class ArtifactList(Model):
    artifacts: list[ArtifactOut]


ServiceNamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")]


class ServiceIn(Model):
    service: Annotated[str, StringConstraints(min_length=1, max_length=256 * 1024)] = Field(
        description="The service file's text (YAML or JSON)."
    )
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        "service.yml", description="Named in error messages."
    )


class ScaleIn(Model):
    instances: int = Field(ge=0, le=1000)


class TaskOut(Model):
    index: int
    state: str
    agent: str | None = None
    ip: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    job_id: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    reason: str | None = None
    version: str


class ServiceOut(Model):
    namespace: str
    name: str
    tenant: str
    instances: int
    running: int
    version: str
    deleting: bool
    reason: str | None = Field(None, description="Why tasks wait, when some do.")
    spec: dict[str, Any]
    tasks: list[TaskOut]
    created_at: float
    updated_at: float


class Applied(Model):
    result: Literal["created", "updated", "unchanged"]
    service: ServiceOut


class ServiceList(Model):
    services: list[ServiceOut]


class EndpointOut(Model):
    task: int
    agent: str | None
    ip: str | None
    ports: dict[str, int]


class EndpointList(Model):
    endpoints: list[EndpointOut]


class SampleOut(Model):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    value: float


class TaskMetricsOut(Model):
    task: int
    agent: str
    up: bool
    at: float
    error: str | None = None
    samples: list[SampleOut]
    strings: dict[str, str] = Field(default_factory=dict, description="Non-numeric values.")


class ServiceMetrics(Model):
    tasks: list[TaskMetricsOut]


class CostLineOut(Model):
    key: str = Field(description="The tenant, pipeline id, day (UTC) or worker.")
    attempts: int
    hours: float = Field(description="Runtime of the attempts, in hours.")
    cost: float = Field(description="In the price's currency.")


class CostReport(Model):
    by: str
    total: float
    lines: list[CostLineOut]
