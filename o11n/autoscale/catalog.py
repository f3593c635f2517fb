"""Reading an instance catalog (YAML: the types a provider can start and their prices)
and a workload trace (CSV) for the simulator; errors name the file and line."""

from __future__ import annotations

import bisect
import csv
import io
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from o11n.core.autoscale import AutoscaleConfig
from o11n.core.capacity import InstanceType, SpotStrategy
from o11n.core.jobs import Model, Seconds, Size
from o11n.core.units import parse_size
from o11n.errors import BadRequest, SpecError
from o11n.pipeline.loader import load_model, read_spec

TRACE_HEADER = ("submit_s", "cpu", "memory", "duration_s", "tags", "tenant")


def _text_values(value: Any) -> Any:
    """Tag values as YAML writes them (8, true) become text."""
    if isinstance(value, dict):
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    return value


class PricePoint(Model):
    """The spot price in effect from `at_s` (seconds from the trace's start) on."""

    at_s: float = Field(ge=0)
    price: float = Field(ge=0)


class TypeSpec(Model):
    """One entry of `types:`."""

    name: str = Field(min_length=1)
    cpu: float = Field(gt=0)
    memory: Size
    gpu: int = Field(0, ge=0)
    arch: str = "x86_64"
    zones: list[str] = Field(default_factory=list)
    price: float = Field(ge=0)
    spot_price: float = Field(ge=0)
    spot_history: list[PricePoint] = Field(default_factory=list)
    tags: Annotated[dict[str, str], BeforeValidator(_text_values)] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _history_in_order(self) -> TypeSpec:
        times = [p.at_s for p in self.spot_history]
        if times != sorted(times):
            raise ValueError(f"{self.name}: spot_history must be in order of at_s")
        return self


class AutoscaleSpec(Model):
    """The optional `autoscale:` section: the policy's settings (durations like 5m)."""

    scale_up_after: Seconds = 10.0
    idle_ttl: Seconds = 300.0
    min_workers: int = Field(0, ge=0)
    max_workers: int = Field(20, ge=0)
    budget_per_hour: float | None = Field(None, ge=0)
    spot_strategy: SpotStrategy = "follow_market"
    price_limit: float | None = Field(None, ge=0)
    spot_duration: Seconds = 3600.0
    out_of_stock_cooldown: Seconds = 300.0


class CatalogSpec(Model):
    """The catalog file."""

    currency: str = "CNY"
    types: list[TypeSpec] = Field(min_length=1)
    autoscale: AutoscaleSpec | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> CatalogSpec:
        seen: set[str] = set()
        for kind in self.types:
            if kind.name in seen:
                raise ValueError(f"two types are named '{kind.name}'")
            seen.add(kind.name)
        return self


@dataclass(frozen=True)
class Catalog:
    """The instance types a provider offers, in one currency, with spot price histories."""

    types: list[InstanceType]
    currency: str = "CNY"
    history: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    autoscale: AutoscaleConfig | None = None  # the file's `autoscale:` section, if any

    def at(self, t: float) -> list[InstanceType]:
        """The types with the spot price in effect at `t` (seconds from the start)."""
        if not self.history:
            return self.types
        return [self._priced(kind, t) for kind in self.types]

    def _priced(self, kind: InstanceType, t: float) -> InstanceType:
        points = self.history.get(kind.name)
        if not points:
            return kind
        i = bisect.bisect_right([at for at, _ in points], t) - 1
        return kind if i < 0 else replace(kind, spot_price=points[i][1])


def load_catalog(path: Path) -> Catalog:
    """The catalog in a YAML file; SpecError (file:line:column) when it is wrong."""
    return parse_catalog(read_spec(path, "catalog"), str(path))


def parse_catalog(text: str, file: str = "<catalog>") -> Catalog:
    """A catalog from YAML text."""
    spec = load_model(text, file, CatalogSpec, "catalog")
    return Catalog(
        types=[_instance_type(t) for t in spec.types],
        currency=spec.currency,
        history={t.name: tuple((p.at_s, p.price) for p in t.spot_history) for t in spec.types},
        autoscale=_config(spec.autoscale) if spec.autoscale else None,
    )


def _instance_type(spec: TypeSpec) -> InstanceType:
    return InstanceType(
        name=spec.name,
        cpu=spec.cpu,
        memory=spec.memory,
        gpu=spec.gpu,
        arch=spec.arch,
        zones=tuple(spec.zones),
        price=spec.price,
        spot_price=spec.spot_price,
        tags=tuple(sorted(spec.tags.items())),
    )


def _config(spec: AutoscaleSpec) -> AutoscaleConfig:
    return AutoscaleConfig(
        scale_up_after_s=spec.scale_up_after,
        idle_ttl_s=spec.idle_ttl,
        min_workers=spec.min_workers,
        max_workers=spec.max_workers,
        budget_per_hour=spec.budget_per_hour,
        spot_strategy=spec.spot_strategy,
        price_limit=spec.price_limit,
        spot_duration_s=spec.spot_duration,
        out_of_stock_cooldown_s=spec.out_of_stock_cooldown,
    )


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a workload trace."""

    submit_s: float
    cpu: float
    memory: int
    duration_s: float
    tags: dict[str, str]
    tenant: str


def load_trace(path: Path) -> list[TraceJob]:
    """The jobs of a trace CSV, in submit order; SpecError (file:line) when it is wrong."""
    return parse_trace(read_spec(path, "trace"), str(path))


def parse_trace(text: str, file: str = "<trace>") -> list[TraceJob]:
    """Trace jobs from CSV text with the header `submit_s,cpu,memory,duration_s,tags,tenant`."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != TRACE_HEADER:
        raise SpecError(f"the trace's header must be {','.join(TRACE_HEADER)}", file, 1, 1)
    jobs = []
    for row in reader:
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            jobs.append(_trace_job(row))
        except BadRequest as exc:
            raise SpecError(exc.message, file, reader.line_num, 1) from None
    if not jobs:
        raise SpecError("the trace has no jobs", file, 1, 1)
    return sorted(jobs, key=lambda job: job.submit_s)


def _trace_job(row: list[str]) -> TraceJob:
    if len(row) != len(TRACE_HEADER):
        raise BadRequest(f"expected {len(TRACE_HEADER)} fields, got {len(row)}")
    submit, cpu, memory, duration, tags, tenant = (cell.strip() for cell in row)
    return TraceJob(
        submit_s=_number(submit, "submit_s"),
        cpu=_number(cpu, "cpu"),
        memory=parse_size(memory),
        duration_s=_number(duration, "duration_s"),
        tags=parse_tags(tags),
        tenant=tenant or "default",
    )


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{what} {text!r} must be a number >= 0")
    return value


def parse_tags(text: str) -> dict[str, str]:
    """Tags written `k=v;k=v` (empty: none)."""
    tags = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BadRequest(f"tag {part!r} must look like k=v")
        tags[key.strip()] = value.strip()
    return tags
