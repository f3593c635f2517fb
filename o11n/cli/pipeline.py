"""`o11n pipeline ...`: compile a pipeline file to a taskbook (more commands to come)."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path

import typer

from o11n.cli.output import pairs
from o11n.core.taskbook import compile_taskbook
from o11n.pipeline.exporters import FORMATS
from o11n.pipeline.loader import load, load_file

app = typer.Typer(help="Pipelines: stages of parallel substages.", no_args_is_help=True)
VAR_PREFIX = "O11N_VAR_"


class Format(StrEnum):
    """The formats of `o11n pipeline compile` (one per exporter)."""

    taskbook = "taskbook"
    argo = "argo"
    jenkins = "jenkins"
    k8s = "k8s"
    gitlab = "gitlab"


@app.command("compile")
def compile_(
    file: Path | None = typer.Argument(None, help="The pipeline file [default: $O11N_PIPELINE]."),
    var: list[str] = typer.Option(None, "--var", help="Override a variable: K=V."),
    build_id: int = typer.Option(0, min=0, help="The taskbook's build_id (Jenkins BUILD_ID)."),
    format_: Format = typer.Option(Format.taskbook, "--format", help="What to print."),
) -> None:
    """Print a pipeline as a taskbook (JSON), an Argo Workflow, a Jenkinsfile, Kubernetes
    Jobs or a .gitlab-ci.yml. Also a container entry point: the pipeline from
    $O11N_PIPELINE, variables from $O11N_VAR_*."""
    if file is not None:
        pipeline = load_file(file)
    elif os.environ.get("O11N_PIPELINE"):
        pipeline = load(os.environ["O11N_PIPELINE"], "$O11N_PIPELINE")
    else:
        raise typer.BadParameter("name a pipeline file, or set O11N_PIPELINE")
    from_env = {
        k.removeprefix(VAR_PREFIX): v for k, v in os.environ.items() if k.startswith(VAR_PREFIX)
    }
    pipeline = pipeline.with_variables({**from_env, **pairs(var, "variable")})
    sys.stdout.write(FORMATS[format_.value](compile_taskbook(pipeline, build_id)))
