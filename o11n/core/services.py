"""Long-running services: the service file as a validated spec (no I/O).

A service is a number of identical tasks that workers run as long-running
processes and the scheduler keeps alive: placed on agents that satisfy its
constraints, given host ports from each agent's range (`hostPort: 0`), and
scraped for metrics. The shape follows BCS applications (BlueKing's container
service for distcc farms).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from o11n.core.constraints import Constraints, parse_constraints
from o11n.core.jobs import (
    EnvName,
    JobSpec,
    Model,
    PortName,
    Resources,
    Seconds,
    ServiceTask,
    TagKey,
    TagValue,
)
from o11n.errors import BadRequest

ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")]
MAX_INSTANCES = 1000
PORT_ENV_PREFIX = "PORT_"  # a task's job is given each host port as PORT_<NAME>
HOST_IP_ENV = "O11N_HOST_IP"  # ... its agent's address
SERVICE_ENV = "O11N_SERVICE"  # ... its service's namespace/name
TASK_ENV = "O11N_TASK"  # ... and its index


class PortSpec(Model):
    """A named host port: `hostPort: 0` takes a free one from the agent's range."""

    name: PortName
    hostPort: int = Field(0, ge=0, le=65535)  # the BCS spelling
    protocol: Literal["tcp", "http"] = "tcp"


class MetricsSpec(Model):
    """Where and how often the scheduler scrapes each running task."""

    port: PortName = Field(description="The name of one of the service's ports.")
    path: str = "/metrics"
    frequency: Seconds = 10.0
    timeout: Seconds = 2.0
    format: Literal["prometheus", "distcc"] = "prometheus"
    headers: dict[str, Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=dict, max_length=16
    )


class ServiceSpec(Model):
    """A service file."""

    name: ServiceName
    namespace: ServiceName = "default"
    instances: int = Field(1, ge=0, le=MAX_INSTANCES)
    command: str | list[str] = Field(description="A shell script, or an argv list.")
    image: str | None = None
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=dict, max_length=256
    )
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=32)
    resources: Resources = Field(default_factory=Resources)
    ports: list[PortSpec] = Field(default_factory=list, max_length=16)
    labels: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=32)
    constraints: Any = None
    metrics: MetricsSpec | None = None
    tenant: str | None = None

    @field_validator("command")
    @classmethod
    def _runs_something(cls, command: str | list[str]) -> str | list[str]:
        if not command or (isinstance(command, list) and not command[0]):
            raise ValueError("command must not be empty")
        return command

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, raw: Any) -> Any:
        try:
            parse_constraints(raw)  # checked here, parsed on use
        except BadRequest as exc:
            raise ValueError(exc.message) from None
        return raw

    @model_validator(mode="after")
    def _ports(self) -> ServiceSpec:
        names = [p.name for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError("two ports have the same name")
        fixed = [p.hostPort for p in self.ports if p.hostPort]
        if len(set(fixed)) != len(fixed):
            raise ValueError("two ports ask for the same hostPort")
        if self.metrics is not None and self.metrics.port not in names:
            raise ValueError(f"metrics.port {self.metrics.port!r} is not one of the ports")
        return self

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    def placement(self) -> Constraints:
        """The parsed constraints."""
        return parse_constraints(self.constraints)

    def version(self) -> str:
        """A short digest of what the tasks run: a changed one rolls them over."""
        body = self.model_dump(mode="json", exclude={"instances"})
        text = json.dumps(body, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def task_ports(spec: JobSpec) -> dict[str, int]:
    """A service task's host ports by name, from the field only the scheduler sets; none
    for other jobs (whatever their env says)."""
    return dict(spec.service.ports) if spec.service is not None else {}


def task_env(task: ServiceTask | None) -> dict[str, str]:
    """The variables a service task's job is given: PORT_<NAME>, O11N_HOST_IP, O11N_SERVICE
    and O11N_TASK (none for other jobs)."""
    if task is None:
        return {}
    return {
        **{f"{PORT_ENV_PREFIX}{name}": str(port) for name, port in task.ports.items()},
        HOST_IP_ENV: task.host_ip,
        SERVICE_ENV: task.service,
        TASK_ENV: str(task.index),
    }
