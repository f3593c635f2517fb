"""Exporters: golden files reviewed like code, and each output checked by its engine's models."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from hera.workflows.models import Workflow

from o11n.core.taskbook import compile_taskbook
from o11n.pipeline.exporters import FORMATS
from o11n.pipeline.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = ["hello", "regression"]
K8S_VERSION = "1.30"


def exported(example: str, fmt: str) -> str:
    return FORMATS[fmt](compile_taskbook(load_file(ROOT / "examples" / f"{example}.yml")))


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("fmt", ["argo", "jenkins", "k8s", "gitlab"])
def test_output_matches_the_golden_file(example: str, fmt: str) -> None:
    # Regenerate after a reviewed change: o11n pipeline compile examples/X.yml --format F
    assert exported(example, fmt) == (GOLDEN / f"{example}.{fmt}").read_text()


@pytest.mark.parametrize("example", EXAMPLES)
def test_argo_output_is_a_valid_workflow(example: str) -> None:
    workflow = Workflow.model_validate(yaml.safe_load(exported(example, "argo")))
    assert workflow.spec is not None and workflow.spec.templates is not None
    steps = workflow.spec.templates[0].steps
    assert steps is not None and len(steps) == 2  # one parallel group per stage


@pytest.mark.parametrize("example", EXAMPLES)
def test_k8s_output_is_valid_jobs(example: str) -> None:
    jobs = list(yaml.safe_load_all(exported(example, "k8s")))
    assert jobs and all(job["kind"] == "Job" for job in jobs)
    for job in jobs:
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_regression_maps_policies() -> None:
    argo = yaml.safe_load(exported("regression", "argo"))
    build = next(t for t in argo["spec"]["templates"] if t["name"] == "build")
    assert build["retryStrategy"] == {"limit": "2", "retryPolicy": "Always"}
    assert build["nodeSelector"] == {"arch": "x86_64"}
    assert build["container"]["resources"]["requests"] == {"cpu": "1", "memory": "268435456"}
    assert all(
        s.get("continueOn") == {"failed": True} for s in argo["spec"]["templates"][0]["steps"][1]
    )  # the test stage goes on after a failure
    k8s = list(yaml.safe_load_all(exported("regression", "k8s")))
    assert (k8s[0]["spec"]["backoffLimit"], k8s[0]["spec"]["activeDeadlineSeconds"]) == (2, 1200)
    gitlab = yaml.safe_load(exported("regression", "gitlab"))
    assert gitlab["stages"] == ["compile", "test"]
    assert gitlab["build"]["retry"]["exit_codes"] == [137]
    assert gitlab["build"]["artifacts"] == {"paths": ["build/app"]}
    jenkins = exported("regression", "jenkins")
    assert "parallel {" in jenkins and "retry(3)" in jenkins and "catchError" in jenkins


def test_every_format_is_offered_by_the_cli() -> None:
    from o11n.cli.pipeline import Format

    assert {f.value for f in Format} == set(FORMATS)
