"""Reserved names: the label and env prefixes only o11n sets, and the one check every door calls.

o11n marks its own jobs with `o11n.*` labels (a pipeline's substage, a service's task, a
build action) and gives every attempt `O11N_*` variables (and a service task its
`PORT_<NAME>`); a tenant who could set them could pass for one of those jobs. So they are
refused where a tenant's input comes in (the HTTP routes for jobs, pipelines and
services, the Remote Execution API), never in the models the scheduler itself builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from o11n.core.jobs import JobSpec
from o11n.errors import BadRequest

LABEL_PREFIXES = ("o11n.",)
ENV_PREFIXES = ("O11N_", "PORT_")


def _reserved(name: str, prefixes: tuple[str, ...]) -> str | None:
    """The reserved prefix `name` starts with (in any case), or None."""
    folded = name.casefold()
    return next((p for p in prefixes if folded.startswith(p.casefold())), None)


def refuse_reserved(
    where: str, env: Iterable[str] = (), labels: Iterable[str] = (), *, field: str = "env"
) -> None:
    """BadRequest naming the first env name or label key that o11n keeps for itself.

    `where` says whose input it is ("job 3", "substage build"), for the message.
    """
    for name in env:
        prefix = _reserved(name, ENV_PREFIXES)
        if prefix is not None:
            raise BadRequest(
                f"{where}: {field} {name!r} is reserved: names starting with {prefix} are "
                "set by o11n only"
            )
    for key in labels:
        prefix = _reserved(key, LABEL_PREFIXES)
        if prefix is not None:
            raise BadRequest(
                f"{where}: label {key!r} is reserved: labels starting with {prefix!r} are "
                "set by o11n only"
            )


def refuse_scheduler_fields(where: str, fields: Mapping[str, object]) -> None:
    """BadRequest if a client set a field only the scheduler sets (given as name: value)."""
    for name, value in fields.items():
        if value is not None:
            raise BadRequest(f"{where}: {name!r} is set by the scheduler only")


def check_job(spec: JobSpec, where: str = "job") -> None:
    """A job as a client submitted it: no reserved env or labels, no scheduler-only field."""
    refuse_reserved(where, spec.env, spec.labels)
    refuse_scheduler_fields(where, {"service": spec.service})
