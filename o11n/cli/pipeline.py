"""`o11n pipeline ...`: compile a pipeline file for other engines; list, show, cancel runs."""

from __future__ import annotations

import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from o11n.cas import tree as trees
from o11n.cli.output import JsonOption, ago, client, pairs, print_json, table
from o11n.client import Client
from o11n.core.taskbook import compile_taskbook
from o11n.core.units import format_size
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


@app.command("list")
def list_pipelines(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """Pipelines, newest first."""
    with client(ctx) as api:
        found = api.request("GET", "/api/v1/pipelines")["pipelines"]
    if json_:
        print_json(found)
        return
    table(
        ["ID", "NAME", "TENANT", "STATE", "DRY RUN", "AGE"],
        [
            [
                p["id"],
                p["name"],
                p["tenant"],
                p["state"],
                "yes" if p["dry_run"] else "",
                ago(p["created_at"]),
            ]
            for p in found
        ],
    )


@app.command("show")
def show(ctx: typer.Context, pipeline_id: int, json_: bool = JsonOption) -> None:
    """One pipeline: every stage and substage, with their jobs."""
    with client(ctx) as api:
        record = api.request("GET", f"/api/v1/pipelines/{pipeline_id}")
    if json_:
        print_json(record)
        return
    print(f"pipeline {record['id']} {record['name']}: {record['state']}")
    table(
        ["STAGE", "SUBSTAGE", "STATE", "JOBS"],
        [
            [
                stage["name"],
                sub["name"],
                sub.get("state") or stage["state"],
                ",".join(str(c["job_id"]) for c in sub.get("copies", []) if c.get("job_id")),
            ]
            for stage in record["stages"]
            for sub in stage["substages"]
        ],
    )


@app.command("cancel")
def cancel(ctx: typer.Context, pipeline_id: int) -> None:
    """Cancel a running pipeline and its jobs."""
    with client(ctx) as api:
        record = api.request("POST", f"/api/v1/pipelines/{pipeline_id}/cancel", retry=False)
    print(f"pipeline {pipeline_id} {record['state']}")


@app.command("artifacts")
def artifacts(
    ctx: typer.Context,
    pipeline_id: int,
    download: Path = typer.Option(
        None, "--download", file_okay=False, help="Write them under DIR/<substage>/."
    ),
    json_: bool = JsonOption,
) -> None:
    """The artifacts a pipeline's substages stored (cached substages' included)."""
    with client(ctx) as api:
        found = api.request("GET", f"/api/v1/pipelines/{pipeline_id}/artifacts")["artifacts"]
        if download is not None:
            _download(api, found, download)
    if json_:
        print_json(found)
        return
    table(
        ["SUBSTAGE", "PATH", "SIZE", "DIGEST"],
        [
            [
                a["substage"],
                a["path"],
                format_size(a["size"]) if a["digest"] else "link",
                (a["digest"] or a["link"])[:16],
            ]
            for a in found
        ],
    )
    if download is not None:
        print(f"{len(found)} files written under {download}", file=sys.stderr)


def _download(api: Client, found: list[dict[str, Any]], dest: Path) -> None:
    """Lay out each substage's artifacts under dest/<substage>/, each blob fetched once."""
    with tempfile.TemporaryDirectory(prefix="o11n-artifacts-") as tmp:
        blobs = Path(tmp)
        for digest in {a["digest"] for a in found if a["digest"]}:
            (blobs / digest).write_bytes(api.get_blob(digest))
        by_substage: dict[str, trees.Tree] = {}
        for a in found:
            entry = trees.Entry(a["digest"], a["size"], a.get("executable", False), a["link"])
            by_substage.setdefault(a["substage"], {})[a["path"]] = entry
        for substage, tree in by_substage.items():
            folder = dest / substage.replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            trees.lay_out(tree, folder, lambda d: blobs / d)
